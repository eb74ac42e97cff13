// The dense solution of the global system, written once over the linear-algebra layer (linalg.hpp)
// and run by every engine (CPU: LAPACK; CUDA: cuSOLVER): constraints by elimination or Lagrange
// multipliers, then Cholesky (decomposition), Cholesky plus covariance (inversion) or
// eigen-decomposition (diagonalization); the checks and weak-mode reports of a matrix that is not
// positive definite; pede's sweeps of a singular one (FactorOptions::solve_singular).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gpede/detail/backend.hpp"
#include "gpede/detail/band_cholesky.hpp"
#include "gpede/detail/linalg.hpp"
#include "gpede/detail/minres.hpp"

namespace gpede::detail {

/// Relative pivot tolerance: a Cholesky pivot L_kk^2 below tol * C_kk (or a pivot block of the
/// equilibrated bordered matrix below tol) counts as zero: pede's 16 eps relative pivot test of
/// its inversion, widened by sqrt(n) for the rounding of long dot products.
double pivot_tolerance(std::int64_t n);
/// The checks before any factorisation of the n x n global matrix (n = diagonal.size()): rows
/// holding non-finite elements (`nonfinite`) or non-finite constraint coefficients (solvable ==
/// false); except for MINRES, parameters outside all constraints without a positive diagonal
/// element (ok == false; solvable only with options.solve_singular). Fills report.
void check_global_system(const std::vector<std::int64_t>& nonfinite, const std::vector<double>& diagonal,
                         const ConstraintSystem& constraints, const FactorOptions& options, FactorReport& report);
/// Householder QR of A^T with the rows of A normalised (m > 0), in the engine's memory: the
/// reflectors below R (n x m) and their scalars, R itself on the host (min(n, m) x m), and the
/// rows' norms. pede's rank test reads R; elimination works in the basis of the reflectors.
struct ConstraintQr {
  linalg::Matrix q, tau;
  std::vector<double> r, row_norm;
};
ConstraintQr constraint_qr(linalg::Engine& engine, const ConstraintSystem& constraints);
/// pede's rank test of the constraints on R (m columns, leading dimension min(n, m)) of the
/// Householder QR of A^T with its rows normalised: false, with report.dependent_constraints and
/// the message filled (solvable == false), where some depend on earlier ones.
bool check_constraint_rank(const std::vector<double>& r, std::int64_t n, std::int64_t m, FactorReport& report);

class DenseSolution {
 public:
  explicit DenseSolution(linalg::Engine& engine) : m_engine(engine) {}

  /// matrix: n x n symmetric (both triangles valid) in the engine's memory; consumed.
  /// Returns ok == false (with a message naming the number of bad pivots or non-positive
  /// eigenvalues, and their variable indices) where the (reduced) matrix is not positive definite
  /// or the bordered matrix is singular, or where the constraints are linearly dependent.
  /// Peak memory: the one n x n matrix for decomposition and inversion with elimination (the
  /// factor is inverted in place), a second one for diagonalization (eigenvectors) and for
  /// multipliers (the (n+m) x (n+m) bordered matrix); one is kept for solve.
  FactorReport factorize(linalg::Matrix matrix, std::int64_t n, const ConstraintSystem& constraints,
                         const FactorOptions& options);
  /// MINRES (options.method == Method::minres) over a matrix given by its product y := C x, its
  /// diagonal and the rows holding non-finite values (sparse storage, say); constraints as above.
  /// With a band preconditioner (options.minres_bandwidth = w > 0), `band` is C's band, row-major
  /// n x w: band[i * w + k] = C(i, i - k).
  FactorReport factorize_product(VectorMap product, std::vector<double> diagonal, std::vector<std::int64_t> nonfinite,
                                 std::int64_t n, const ConstraintSystem& constraints, const FactorOptions& options,
                                 std::vector<double> band = {});
  /// Newton step dp (size n): minimises 1/2 dp.C.dp - b.dp subject to A dp = residual (size m;
  /// empty means zero). Throws RuntimeError after a failed factorisation, except for
  /// diagonalization, where the eigen-directions with eigenvalues at the rounding level (or
  /// below) are left out, and where options.solve_singular gave a solution with pivots left out.
  std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual = {}) const;
  /// Diagonal of the covariance C^-1 in the variable space, transformed back from the reduced space
  /// (elimination) or the top-left block of the bordered inverse (multipliers). Empty unless
  /// options.want_covariance and the method is inversion or diagonalization.
  std::vector<double> covariance_diagonal() const { return m_cov_diag; }
  /// Frees the factorisation.
  void release() { reset(); }
  /// How the last solve went, where it was iterative (Method::minres).
  IterativeSolveInfo last_solve_info() const { return m_last_solve; }

 private:
  enum class Kind {
    none,            // nothing factorised, or the factorisation failed
    trivial,         // no free direction left (n == m or n == 0): dp meets the constraints only
    cholesky,        // m_factor: n x n, Q^T C Q with the Cholesky factor of the reduced matrix in its trailing block
    cholesky_inverse,  // as cholesky, with the inverse X = L^-1 of the factor in place of L
    eigen,           // m_factor: n x n, eigenvectors in variable space in columns mr..n-1
    bordered_ldlt,   // m_factor: (n+m)^2 Bunch-Kaufman factor of the equilibrated bordered matrix
    bordered_eigen,  // m_factor: (n+m)^2 eigenvectors of the bordered matrix (constraint rows scaled)
    swept,           // m_factor: n x n, Q^T C Q; m_swept: inverse of the reduced matrix's accepted block
    bordered_swept,  // m_swept: (n+m)^2 inverse of the (unscaled) bordered matrix's accepted block
    minres,          // m_factor: n x n, C itself; MINRES per solve on Q2^T C Q2 (elimination), on the
                     // bordered matrix (multipliers) or on C, with the preconditioner below
  };

  void reset();
  FactorReport factorize_bordered(linalg::Matrix matrix, const ConstraintSystem& constraints,
                                  const std::vector<double>& diagonal, FactorReport report);
  FactorReport factorize_reduced(linalg::Matrix matrix, FactorReport report);
  void check_sizes(std::int64_t rows, std::int64_t cols, std::int64_t n, const ConstraintSystem& constraints) const;
  // After the sizes: the checks, the constraints' decomposition, then the method.
  FactorReport factorize_checked(linalg::Matrix matrix, std::vector<std::int64_t> bad, const std::vector<double>& diagonal,
                                 std::int64_t n, const ConstraintSystem& constraints, const FactorOptions& options,
                                 const std::vector<double>& band);
  // MINRES over m_product: builds the preconditioner (diagonal or band of the reduced matrix with
  // elimination; the diagonal or band of C bordered by the constraints with multipliers).
  FactorReport factorize_minres(const ConstraintSystem& constraints, const std::vector<double>& diagonal,
                                const std::vector<double>& band, FactorReport report);
  // The band (row-major n x w, see factorize_product) of the n x n matrix c in the engine.
  std::vector<double> band_of(linalg::View c, std::int64_t n, std::int64_t w) const;
  // m_band := the Cholesky factor of the band (n x w), dependent rows kept as their diagonal
  // (m_band_note says so where the steering did not ask for it).
  void factorize_band(std::vector<double> band, std::int64_t n, std::int64_t w);
  // x := M1^-1 x and x := M1^-T x for the preconditioner's factor M1 (M = M1 M1^T) of C (with
  // multipliers: the band's Cholesky factor, or 1/sqrt of the diagonal where there is no band or
  // diagonal_only).
  void precondition_forward(double* x, bool diagonal_only) const;
  void precondition_backward(double* x, bool diagonal_only) const;
  std::vector<double> solve_minres(const std::vector<double>& b, const std::vector<double>& residual) const;
  // y := C x through the engine (x, y of size n on the host).
  void multiply_matrix(const std::vector<double>& x, std::vector<double>& y) const;
  // t := (K K^T)^-1 t with the LDL^T f of K K^T (multipliers' preconditioners).
  void solve_constraint_product(const std::vector<double>& f, std::vector<double>& t) const;
  // k := M1^-1 A^T row by row (forward applies M1^-1) and s := the LDL^T of k k^T (m x m, 1/D on
  // the diagonal): the factors of pede's constrained preconditioner.
  void constrained_factors(const std::function<void(double*)>& forward, std::vector<double>& k,
                           std::vector<double>& s) const;
  // Whether a solve with the band preconditioner left a relative residual above
  // kBandResidualLimit (then noted): the caller solves again with the diagonal preconditioner.
  bool band_solve_failed(const VectorMap& multiply, const std::vector<double>& rhs, const MinresOutcome& out) const;
  void add_note(const std::string& note) const;
  static constexpr double kBandResidualLimit = 0.01;
  // v := Q v for an n x k block (left), with the reflectors of the constraints' QR.
  void apply_q(linalg::Side side, bool transpose, linalg::View c) const;
  // With elimination: the part of the step that meets the constraints, y1 = R^-T (residual / |a_k|),
  // the first mr coordinates in the Q basis.
  std::vector<double> constrained_coordinates(const std::vector<double>& residual) const;
  // The failure paths of options.solve_singular: sweeps of the reduced matrix (restored from the
  // strict upper triangle of its block and the saved diagonal) or of the bordered matrix.
  void solve_reduced_by_sweeps(linalg::View reduced, const std::vector<double>& diag, FactorReport& report);
  void solve_bordered_by_sweeps(linalg::View bordered, const std::vector<double>& diag, FactorReport& report);
  std::vector<double> from_engine(linalg::View v) const { return m_engine.download(v); }
  linalg::Matrix to_engine(const std::vector<double>& v, std::int64_t rows, std::int64_t cols) const;

  linalg::Engine& m_engine;
  Kind m_kind = Kind::none;
  std::int64_t m_n = 0;
  std::int64_t m_m = 0;
  std::int64_t m_eliminated = 0;  // constraints eliminated (leading rows/columns of Q^T C Q dropped)
  FactorOptions m_options;
  linalg::Matrix m_factor;                    // factor or eigenvectors (by m_kind)
  std::vector<double> m_inverse_eigenvalues;  // eigen kinds: 1/lambda, 0 for left-out directions
  linalg::Matrix m_q;                         // elimination: Householder vectors of A^T (n x m) ...
  linalg::Matrix m_tau;                       // ... and their scalars
  std::vector<double> m_r;                    // elimination: R of that QR (m x m, upper), on the host
  std::vector<double> m_row_norm;             // elimination: norms of the constraint rows
  std::vector<double> m_cross;                // eigen with elimination: (nr x mr) block of Q^T C Q
  linalg::Pivots m_pivots;                    // bordered_ldlt: Bunch-Kaufman pivots
  std::vector<double> m_scale;                // bordered kinds: symmetric scaling (powers of two)
  linalg::Matrix m_swept;                     // swept kinds: the inverse (see Kind)
  std::vector<double> m_cov_diag;
  // minres: 1 / the diagonal of the reduced matrix (0 where it is not positive); with multipliers
  // 1/sqrt of C's diagonal, the constraints (row-major m x n, as given and scaled by the
  // preconditioner's M1^-1) and the factor of their product (pede's constrained preconditioner).
  // The diagonal is kept beside a band preconditioner, for a band that fails.
  std::vector<double> m_inverse_diagonal;
  std::vector<double> m_constraints;
  std::vector<double> m_scaled_constraints;
  std::vector<double> m_constraint_product;  // LDL^T of K K^T, m x m, 1/D on the diagonal
  std::vector<std::int64_t> m_constraint_order;  // elimination: pede's order of the constraints
  bool m_precondition = true;
  // minres with a band preconditioner (m_band.w > 0): the Cholesky factor of the reduced matrix's
  // band (elimination) or of C's band (multipliers).
  BandFactor m_band;
  std::string m_band_note;
  // Beside a band, with multipliers: K and the LDL^T of K K^T of the diagonal preconditioner.
  std::vector<double> m_fallback_constraints, m_fallback_product;
  mutable linalg::Matrix m_vector_in, m_vector_out;  // n x 1 engine vectors for C x and Q x
  VectorMap m_product;  // minres: y := C x
  mutable IterativeSolveInfo m_last_solve;
};

}  // namespace gpede::detail
