// The distributed engine of the linear-algebra layer: matrices in ScaLAPACK's 2D block-cyclic
// layout over all MPI processes (a BLACS grid as square as the process count allows, blocks of
// kBlock x kBlock), operations by ScaLAPACK and PBLAS. Every call is collective: all processes
// call it with the same arguments, and what comes back to the host (download, diagonal, sums) is
// the same, bit for bit, on every process, so that the dense solution above (DenseSolution) takes
// the same branches everywhere.
//
// ScaLAPACK's LAPACK-level routines want their operands aligned to the block grid; a block that is
// not (the reduced matrix after m eliminated constraints starts at row m) is copied into a matrix
// of its own first (pdgemr2d), and back. Bunch-Kaufman (the bordered matrix of constraints by
// multipliers), pivoted Cholesky (the report of a matrix that is not positive definite) and pede's
// sweeps have no ScaLAPACK routine: they gather the block onto every process and run the CPU
// engine there.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "gpede/detail/linalg.hpp"
#include "gpede/error.hpp"
#include "gpede/solver.hpp"
#include "scalapack_engine.hpp"

extern "C" {
void Cblacs_pinfo(int* me, int* count);
void Cblacs_get(int context, int what, int* value);
void Cblacs_gridinit(int* context, const char* order, int rows, int cols);
void Cblacs_gridinfo(int context, int* rows, int* cols, int* row, int* col);
void Cblacs_gridexit(int context);
int numroc_(const int* n, const int* nb, const int* iproc, const int* isrc, const int* nprocs);
void descinit_(int* desc, const int* m, const int* n, const int* mb, const int* nb, const int* irsrc, const int* icsrc,
               const int* context, const int* lld, int* info);
void pdgemr2d_(const int* m, const int* n, const double* a, const int* ia, const int* ja, const int* desca, double* b,
               const int* ib, const int* jb, const int* descb, const int* context);
void pdgeqrf_(const int* m, const int* n, double* a, const int* ia, const int* ja, const int* desca, double* tau,
              double* work, const int* lwork, int* info);
void pdormqr_(const char* side, const char* trans, const int* m, const int* n, const int* k, const double* a,
              const int* ia, const int* ja, const int* desca, const double* tau, double* c, const int* ic,
              const int* jc, const int* descc, double* work, const int* lwork, int* info);
void pdpotrf_(const char* uplo, const int* n, double* a, const int* ia, const int* ja, const int* desca, int* info);
void pdpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* ia, const int* ja,
              const int* desca, double* b, const int* ib, const int* jb, const int* descb, int* info);
void pdtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* ia, const int* ja,
              const int* desca, int* info);
void pdtrmm_(const char* side, const char* uplo, const char* trans, const char* diag, const int* m, const int* n,
             const double* alpha, const double* a, const int* ia, const int* ja, const int* desca, double* b,
             const int* ib, const int* jb, const int* descb);
void pdtrsm_(const char* side, const char* uplo, const char* trans, const char* diag, const int* m, const int* n,
             const double* alpha, const double* a, const int* ia, const int* ja, const int* desca, double* b,
             const int* ib, const int* jb, const int* descb);
void pdsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* ia, const int* ja,
              const int* desca, double* w, double* z, const int* iz, const int* jz, const int* descz, double* work,
              const int* lwork, int* iwork, const int* liwork, int* info);
void pdgemv_(const char* trans, const int* m, const int* n, const double* alpha, const double* a, const int* ia,
             const int* ja, const int* desca, const double* x, const int* ix, const int* jx, const int* descx,
             const int* incx, const double* beta, double* y, const int* iy, const int* jy, const int* descy,
             const int* incy);
}

namespace gpede::detail::linalg {
namespace {

constexpr int kBlock = 64;

int blas_int(std::int64_t value) {
  if (value > INT32_MAX) {
    throw RuntimeError("ScaLAPACK: dimension " + std::to_string(value) + " exceeds the integer range");
  }
  return static_cast<int>(std::max<std::int64_t>(value, 0));
}

void check_info(int info, const char* routine) {
  if (info < 0) throw RuntimeError(std::string("ScaLAPACK ") + routine + ": argument " + std::to_string(-info) + " is illegal");
}

int workspace(double query) { return std::max(1, static_cast<int>(query) + 1); }

/// A distributed matrix: its descriptor and this process's blocks (column-major, leading
/// dimension lld; never empty, so that its address names it).
struct Distributed {
  int desc[9] = {};
  std::int64_t rows = 0, cols = 0;
  int local_rows = 0, local_cols = 0, lld = 1;
  std::vector<double> local;
  /// Householder scalars of the last householder_qr on a matrix used as `tau` (local, along the
  /// reflectors' columns).
  std::vector<double> tau;
};

class ScalapackEngine final : public DistributedEngine {
 public:
  explicit ScalapackEngine(ProcessGroup& processes) : m_processes(processes) {
    m_rank = processes.rank();
    m_size = processes.size();
    // The most nearly square grid: rows <= columns.
    m_prow = static_cast<int>(std::sqrt(static_cast<double>(m_size)));
    while (m_size % m_prow != 0) --m_prow;
    m_pcol = m_size / m_prow;
    Cblacs_get(-1, 0, &m_context);
    Cblacs_gridinit(&m_context, "Row", m_prow, m_pcol);
    int rows = 0, cols = 0;
    Cblacs_gridinfo(m_context, &rows, &cols, &m_myrow, &m_mycol);
    if (rows != m_prow || cols != m_pcol || m_myrow < 0) {
      throw RuntimeError("ScaLAPACK: no " + std::to_string(m_prow) + " x " + std::to_string(m_pcol) + " process grid");
    }
    m_cpu = make_cpu_engine();
  }
  ~ScalapackEngine() override { Cblacs_gridexit(m_context); }

  std::string name() const override {
    return "scalapack (" + std::to_string(m_prow) + " x " + std::to_string(m_pcol) + " processes), blocks of " +
           std::to_string(kBlock) + " x " + std::to_string(kBlock);
  }
  int grid_rows() const override { return m_prow; }
  int grid_cols() const override { return m_pcol; }

  Matrix allocate(std::int64_t rows, std::int64_t cols) override {
    auto d = std::make_shared<Distributed>();
    d->rows = rows, d->cols = cols;
    const int m = blas_int(rows), n = blas_int(cols), nb = kBlock, zero = 0;
    d->local_rows = numroc_(&m, &nb, &m_myrow, &zero, &m_prow);
    d->local_cols = numroc_(&n, &nb, &m_mycol, &zero, &m_pcol);
    d->lld = std::max(1, d->local_rows);
    int info = 0;
    descinit_(d->desc, &m, &n, &nb, &nb, &zero, &zero, &m_context, &d->lld, &info);
    check_info(info, "descinit");
    d->local.assign(std::max<std::size_t>(1, static_cast<std::size_t>(d->lld) * static_cast<std::size_t>(d->local_cols)),
                    0.0);
    double* data = d->local.data();
    m_matrices[data] = d;
    // The registry forgets the matrix with its last owner.
    auto storage = std::shared_ptr<void>(d.get(), [this, keep = d, data](void*) mutable {
      m_matrices.erase(data);
      keep.reset();
    });
    return Matrix(std::move(storage), data, rows, cols);
  }

  void fill(View a, double value) override {
    each(a, [&](std::int64_t, std::int64_t, double& x) { x = value; });
  }
  void copy(View from, View to) override { redistribute(from, to); }
  void upload(const std::vector<double>& host, View to) override {
    each(to, [&](std::int64_t i, std::int64_t j, double& x) { x = host[static_cast<std::size_t>(i + j * to.rows)]; });
  }
  std::vector<double> download(View a) override {
    std::vector<double> host(static_cast<std::size_t>(a.rows * a.cols), 0.0);
    each(a, [&](std::int64_t i, std::int64_t j, double& x) { host[static_cast<std::size_t>(i + j * a.rows)] = x; });
    sum(host);  // each element from its one owner, zeros elsewhere: exact
    return host;
  }
  std::vector<double> diagonal(View a) override {
    std::vector<double> d(static_cast<std::size_t>(std::min(a.rows, a.cols)), 0.0);
    each(a, [&](std::int64_t i, std::int64_t j, double& x) {
      if (i == j) d[static_cast<std::size_t>(i)] = x;
    });
    sum(d);
    return d;
  }
  void set_diagonal(View a, const std::vector<double>& values) override {
    each(a, [&](std::int64_t i, std::int64_t j, double& x) {
      if (i == j && static_cast<std::size_t>(i) < values.size()) x = values[static_cast<std::size_t>(i)];
    });
  }
  std::vector<std::int64_t> nonfinite_rows(View a) override {
    std::vector<double> bad(static_cast<std::size_t>(a.rows), 0.0);
    each(a, [&](std::int64_t i, std::int64_t j, double& x) {
      if (!std::isfinite(x)) bad[static_cast<std::size_t>(i)] = bad[static_cast<std::size_t>(j)] = 1.0;
    });
    sum(bad);
    std::vector<std::int64_t> out;
    for (std::int64_t i = 0; i < a.rows; ++i) {
      if (bad[static_cast<std::size_t>(i)] > 0.0) out.push_back(i);
    }
    return out;
  }
  void scale(View a, const std::vector<double>& row_scale, const std::vector<double>& col_scale) override {
    each(a, [&](std::int64_t i, std::int64_t j, double& x) {
      x *= row_scale[static_cast<std::size_t>(i)] * col_scale[static_cast<std::size_t>(j)];
    });
  }
  void copy_lower(View from, View to) override {
    redistribute(from, to);
    zero_strict_upper(to);
  }
  std::vector<double> column_sum_squares(View a) override {
    std::vector<double> out(static_cast<std::size_t>(a.cols), 0.0);
    each(a, [&](std::int64_t, std::int64_t j, double& x) { out[static_cast<std::size_t>(j)] += x * x; });
    sum(out);
    return out;
  }
  std::vector<double> lower_column_sum_squares(View a) override {
    std::vector<double> out(static_cast<std::size_t>(a.cols), 0.0);
    each(a, [&](std::int64_t i, std::int64_t j, double& x) {
      if (i >= j) out[static_cast<std::size_t>(j)] += x * x;
    });
    sum(out);
    return out;
  }
  void zero_strict_upper(View a) override {
    each(a, [&](std::int64_t i, std::int64_t j, double& x) {
      if (i < j) x = 0.0;
    });
  }
  std::vector<double> weighted_row_sum_squares(View a, const std::vector<double>& w) override {
    std::vector<double> out(static_cast<std::size_t>(a.rows), 0.0);
    each(a, [&](std::int64_t i, std::int64_t j, double& x) {
      out[static_cast<std::size_t>(i)] += x * x * w[static_cast<std::size_t>(j)];
    });
    sum(out);
    return out;
  }

  void householder_qr(View a, View tau) override {
    if (a.rows == 0 || a.cols == 0) return;
    Aligned q(*this, a, !at_origin(a), 0, 0);  // the scalars' layout then follows from (0, 0)
    Distributed& d = dist(q.view);
    const int m = blas_int(a.rows), n = blas_int(a.cols), one = 1;
    int info = 0, lwork = -1;
    double query = 0.0;
    std::vector<double> taus(static_cast<std::size_t>(d.local_cols) + 1);
    pdgeqrf_(&m, &n, d.local.data(), &one, &one, d.desc, taus.data(), &query, &lwork, &info);
    check_info(info, "pdgeqrf");
    lwork = workspace(query);
    std::vector<double> work(static_cast<std::size_t>(lwork));
    pdgeqrf_(&m, &n, d.local.data(), &one, &one, d.desc, taus.data(), work.data(), &lwork, &info);
    check_info(info, "pdgeqrf");
    q.back();
    // tau's elements: scalar j from the process that holds A(j, j) (ScaLAPACK keeps the scalars
    // along the columns of the reflectors); and the local layout kept for apply_householder.
    const std::int64_t k = std::min(a.rows, a.cols);
    std::vector<double> values(static_cast<std::size_t>(k), 0.0);
    for (std::int64_t j = 0; j < k; ++j) {
      if (owner(j, m_prow) == m_myrow && owner(j, m_pcol) == m_mycol) {
        values[static_cast<std::size_t>(j)] = taus[static_cast<std::size_t>(local_index(j, m_pcol))];
      }
    }
    sum(values);
    upload(values, tau.block(0, 0, k, 1));
    dist(tau).tau = std::move(taus);
  }

  void apply_householder(Side side, bool transpose, View q, View tau, std::int64_t reflectors, View c) override {
    if (c.rows == 0 || c.cols == 0 || reflectors == 0) return;
    if (dist(tau).tau.empty()) {
      throw RuntimeError("ScaLAPACK: apply_householder without the householder_qr of its scalars");
    }
    // The reflectors as householder_qr saw them: at (0, 0) of a matrix of their own; the target's
    // rows (left) or columns (right) on the same block grid as the reflectors' rows.
    Aligned reflect(*this, q, !at_origin(q), 0, 0);
    const bool left = side == Side::left;
    const bool fits = left ? starts_block(c.row0, m_prow) : starts_block(c.col0, m_pcol);
    Aligned target(*this, c, !fits, 0, 0);
    Distributed& dq = dist(reflect.view);
    Distributed& dc = dist(target.view);
    const char s = left ? 'L' : 'R', t = transpose ? 'T' : 'N';
    const int m = blas_int(c.rows), n = blas_int(c.cols), k = blas_int(reflectors), one = 1;
    const int ic = first(target.view.row0), jc = first(target.view.col0);
    int info = 0, lwork = -1;
    double query = 0.0;
    const double* taus = dist(tau).tau.data();
    pdormqr_(&s, &t, &m, &n, &k, dq.local.data(), &one, &one, dq.desc, taus, dc.local.data(), &ic, &jc, dc.desc,
             &query, &lwork, &info);
    check_info(info, "pdormqr");
    lwork = workspace(query);
    std::vector<double> work(static_cast<std::size_t>(lwork));
    pdormqr_(&s, &t, &m, &n, &k, dq.local.data(), &one, &one, dq.desc, taus, dc.local.data(), &ic, &jc, dc.desc,
             work.data(), &lwork, &info);
    check_info(info, "pdormqr");
    target.back();
  }

  // pdpotrf and pdtrtri want a diagonal block that starts a block of the grid: the reduced matrix
  // after m constraints, at (m, m), is copied to a matrix of its own unless m is a multiple of 64.
  std::int64_t cholesky(View a) override {
    if (a.rows == 0) return 0;
    Aligned f(*this, a, !diagonal_block(a), 0, 0);
    Distributed& d = dist(f.view);
    const int n = blas_int(a.rows), ia = first(f.view.row0), ja = first(f.view.col0);
    int info = 0;
    pdpotrf_("L", &n, d.local.data(), &ia, &ja, d.desc, &info);
    check_info(info, "pdpotrf");
    f.back();
    return info;
  }
  void cholesky_solve(View l, View b) override {
    if (l.rows == 0 || b.cols == 0) return;
    Aligned f(*this, l, !diagonal_block(l), 0, 0);
    // b's rows on the factor's block grid: a copy of b (columns of n) at the factor's row offset.
    Aligned x(*this, b, b.row0 != f.view.row0, f.view.row0, 0);
    Distributed& dl = dist(f.view);
    Distributed& dx = dist(x.view);
    const int n = blas_int(l.rows), nrhs = blas_int(b.cols);
    const int il = first(f.view.row0), jl = first(f.view.col0), ib = first(x.view.row0), jb = first(x.view.col0);
    int info = 0;
    pdpotrs_("L", &n, &nrhs, dl.local.data(), &il, &jl, dl.desc, dx.local.data(), &ib, &jb, dx.desc, &info);
    check_info(info, "pdpotrs");
    x.back();
  }
  void triangular_inverse(View l) override {
    if (l.rows == 0) return;
    Aligned f(*this, l, !diagonal_block(l), 0, 0);
    Distributed& d = dist(f.view);
    const int n = blas_int(l.rows), ia = first(f.view.row0), ja = first(f.view.col0);
    int info = 0;
    pdtrtri_("L", "N", &n, d.local.data(), &ia, &ja, d.desc, &info);
    check_info(info, "pdtrtri");
    if (info > 0) {
      throw RuntimeError("ScaLAPACK pdtrtri: zero diagonal element " + std::to_string(info) + " of a regular factor");
    }
    f.back();
  }
  void lower_triangular_multiply(View l, bool transpose, View x) override {
    triangular(pdtrmm_, "L", transpose ? "T" : "N", l, x);
  }
  void upper_triangular_solve(View u, View x) override { triangular(pdtrsm_, "U", "N", u, x); }

  std::vector<std::int64_t> pivoted_cholesky(View a, double tol, std::int64_t& rank) override {
    // No ScaLAPACK routine: the block on every process, LAPACK there, the factor back.
    Matrix host = adopt_host_matrix(download(a), a.rows, a.cols);
    std::vector<std::int64_t> piv = m_cpu->pivoted_cholesky(host.view(), tol, rank);
    upload(m_cpu->download(host.view()), a);
    return piv;
  }

  std::vector<double> eigen(View a) override {
    if (a.rows == 0) return {};
    Aligned f(*this, a, !at_origin(a), 0, 0);  // pdsyevd: at the start of a block, as Z
    Distributed& d = dist(f.view);
    Matrix z = allocate(a.rows, a.cols);
    Distributed& dz = dist(z.view());
    const int n = blas_int(a.rows), one = 1;
    std::vector<double> w(static_cast<std::size_t>(n));
    int info = 0, lwork = -1, liwork = -1, iquery = 0;
    double query = 0.0;
    pdsyevd_("V", "L", &n, d.local.data(), &one, &one, d.desc, w.data(), dz.local.data(), &one, &one, dz.desc, &query,
             &lwork, &iquery, &liwork, &info);
    check_info(info, "pdsyevd");
    // The documented minimum, doubled: the query alone leaves pdsyevd's inner pdormtr short of
    // workspace on some grids ("parameter number 16 had an illegal value").
    const std::int64_t np = d.local_rows, nq = d.local_cols, nn = n;
    const std::int64_t documented =
        std::max<std::int64_t>(1 + 6 * nn + 2 * np * nq, 3 * nn + std::max<std::int64_t>(kBlock * (np + 1), 3 * kBlock)) +
        2 * nn;
    lwork = blas_int(2 * std::max<std::int64_t>(workspace(query), documented));
    liwork = std::max({1, iquery, 7 * n + 8 * m_pcol + 2});
    std::vector<double> work(static_cast<std::size_t>(lwork));
    std::vector<int> iwork(static_cast<std::size_t>(liwork));
    pdsyevd_("V", "L", &n, d.local.data(), &one, &one, d.desc, w.data(), dz.local.data(), &one, &one, dz.desc,
             work.data(), &lwork, iwork.data(), &liwork, &info);
    check_info(info, "pdsyevd");
    if (info > 0) {
      throw RuntimeError("ScaLAPACK pdsyevd: the eigen-decomposition did not converge (info " + std::to_string(info) + ")");
    }
    redistribute(z.view(), a);
    return w;
  }

  Pivots ldlt(View a) override {
    // No Bunch-Kaufman in ScaLAPACK: LAPACK's on every process, on the gathered block; the factor
    // is kept on the host for the solves and written back into `a` as the interface says.
    auto host = std::make_shared<Matrix>(adopt_host_matrix(download(a), a.rows, a.cols));
    Pivots pivots = m_cpu->ldlt(host->view());
    upload(m_cpu->download(host->view()), a);
    pivots.engine = host;
    return pivots;
  }
  void ldlt_solve(View a, const Pivots& pivots, View b) override {
    auto host = std::static_pointer_cast<Matrix>(pivots.engine);
    if (!host) throw RuntimeError("ScaLAPACK: ldlt_solve without the factor of ldlt");
    Matrix x = adopt_host_matrix(download(b), b.rows, b.cols);
    m_cpu->ldlt_solve(host->view(), pivots, x.view());
    upload(m_cpu->download(x.view()), b);
    (void)a;
  }
  std::vector<double> ldlt_inverse_diagonal(View a, const Pivots& pivots) override {
    auto host = std::static_pointer_cast<Matrix>(pivots.engine);
    if (!host) throw RuntimeError("ScaLAPACK: ldlt_inverse_diagonal without the factor of ldlt");
    (void)a;
    return m_cpu->ldlt_inverse_diagonal(host->view(), pivots);
  }

  void gemv(bool transpose, double alpha, View a, View x, double beta, View y) override {
    if (a.rows == 0 || a.cols == 0) {
      if (beta == 0.0) fill(y, 0.0);
      return;
    }
    Distributed& da = dist(a);
    Distributed& dx = dist(x);
    Distributed& dy = dist(y);
    const int m = blas_int(a.rows), n = blas_int(a.cols), inc = 1;
    const int ia = blas_int(a.row0 + 1), ja = blas_int(a.col0 + 1), ix = blas_int(x.row0 + 1),
              jx = blas_int(x.col0 + 1), iy = blas_int(y.row0 + 1), jy = blas_int(y.col0 + 1);
    pdgemv_(transpose ? "T" : "N", &m, &n, &alpha, da.local.data(), &ia, &ja, da.desc, dx.local.data(), &ix, &jx,
            dx.desc, &inc, &beta, dy.local.data(), &iy, &jy, dy.desc, &inc);
  }

  SweepOutcome sweep(View a, double limit, SweepOrder order) override {
    Matrix host = adopt_host_matrix(download(a), a.rows, a.cols);
    SweepOutcome outcome = m_cpu->sweep(host.view(), limit, order);
    upload(m_cpu->download(host.view()), a);
    return outcome;
  }

  // ---- the global matrix ----------------------------------------------------------------------
  void sum_full_matrices(const double* full, std::int64_t n, View to) override {
    // Column panels of one block column per process column: each process packs, per destination,
    // the elements that destination owns, in its local order; MPI_Reduce_scatter adds them up.
    Distributed& d = dist(to);
    if (to.row0 != 0 || to.col0 != 0 || to.rows != n || to.cols != n) {
      throw RuntimeError("ScaLAPACK: sum_full_matrices wants a whole n x n matrix");
    }
    const std::int64_t panel = static_cast<std::int64_t>(kBlock) * m_pcol;
    std::vector<int> counts(static_cast<std::size_t>(m_size));
    std::vector<double> send, receive;
    for (std::int64_t first = 0; first < n; first += panel) {
      send.clear();
      for (int dest = 0; dest < m_size; ++dest) {
        const int drow = dest / m_pcol, dcol = dest % m_pcol;
        const std::int64_t j0 = first + static_cast<std::int64_t>(dcol) * kBlock;
        const std::int64_t j1 = std::min(n, j0 + kBlock);
        std::size_t before = send.size();
        for (std::int64_t j = j0; j < j1; ++j) {
          for (std::int64_t block = drow; block * kBlock < n; block += m_prow) {
            const std::int64_t i0 = block * kBlock, i1 = std::min(n, i0 + kBlock);
            const double* column = full + static_cast<std::size_t>(j) * static_cast<std::size_t>(n);
            send.insert(send.end(), column + i0, column + i1);
          }
        }
        counts[static_cast<std::size_t>(dest)] = static_cast<int>(send.size() - before);
      }
      const int mine = counts[static_cast<std::size_t>(m_rank)];
      receive.assign(static_cast<std::size_t>(std::max(mine, 1)), 0.0);
      if (MPI_Reduce_scatter(send.data(), receive.data(), counts.data(), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) !=
          MPI_SUCCESS) {
        throw RuntimeError("MPI_Reduce_scatter of the global matrix failed");
      }
      // Unpack: this process's block column of the panel, its rows in local order.
      const std::int64_t j0 = first + static_cast<std::int64_t>(m_mycol) * kBlock;
      const std::int64_t j1 = std::min(n, j0 + kBlock);
      std::size_t at = 0;
      for (std::int64_t j = j0; j < j1; ++j) {
        const std::int64_t lj = local_index(j, m_pcol);
        double* column = d.local.data() + static_cast<std::size_t>(lj) * static_cast<std::size_t>(d.lld);
        const std::int64_t count = d.local_rows;
        std::copy(receive.begin() + static_cast<std::ptrdiff_t>(at),
                  receive.begin() + static_cast<std::ptrdiff_t>(at + static_cast<std::size_t>(count)), column);
        at += static_cast<std::size_t>(count);
      }
    }
  }

  void add_elements(View a, const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
                    const std::vector<double>& values) override {
    Distributed& d = dist(a);
    auto add = [&](std::int64_t i, std::int64_t j, double v) {
      const std::int64_t gi = a.row0 + i, gj = a.col0 + j;
      if (owner(gi, m_prow) != m_myrow || owner(gj, m_pcol) != m_mycol) return;
      d.local[static_cast<std::size_t>(local_index(gi, m_prow) + local_index(gj, m_pcol) * d.lld)] += v;
    };
    for (std::size_t k = 0; k < values.size(); ++k) {
      add(rows[k], cols[k], values[k]);
      if (rows[k] != cols[k]) add(cols[k], rows[k], values[k]);
    }
  }

 private:
  using TriangularRoutine = void (*)(const char*, const char*, const char*, const char*, const int*, const int*,
                                    const double*, const double*, const int*, const int*, const int*, double*,
                                    const int*, const int*, const int*);
  /// x := op(T) x or op(T)^-1 x (pdtrmm_ or pdtrsm_) with the triangle `uplo` of t, non-unit;
  /// PBLAS takes both operands at any offsets.
  void triangular(TriangularRoutine routine, const char* uplo, const char* trans, View t, View x) {
    if (t.rows == 0) return;
    Distributed& dt = dist(t);
    Distributed& dx = dist(x);
    const int n = blas_int(t.rows), nrhs = blas_int(x.cols);
    const int it = first(t.row0), jt = first(t.col0), ix = first(x.row0), jx = first(x.col0);
    const double alpha = 1.0;
    routine("L", uplo, trans, "N", &n, &nrhs, &alpha, dt.local.data(), &it, &jt, dt.desc, dx.local.data(), &ix, &jx,
            dx.desc);
  }

  /// The block itself, or (copy) a copy of it at (row0, col0) of a matrix of its own, where the
  /// routine wants other offsets: copied in on construction, back by back().
  struct Aligned {
    Aligned(ScalapackEngine& engine, View v, bool copy, std::int64_t row0, std::int64_t col0)
        : engine(engine), original(v) {
      if (!copy) {
        view = v;
        return;
      }
      own = engine.allocate(row0 + v.rows, col0 + v.cols);
      view = own.view().block(row0, col0, v.rows, v.cols);
      engine.redistribute(v, view);
    }
    void back() {
      if (!own.empty()) engine.redistribute(view, original);
    }
    ScalapackEngine& engine;
    View original, view;
    Matrix own;
  };

  static bool at_origin(const View& v) { return v.row0 == 0 && v.col0 == 0; }
  /// A diagonal block that starts a block of the grid (pdpotrf, pdpotrs, pdtrtri want that).
  static bool diagonal_block(const View& v) { return v.row0 == v.col0 && v.row0 % kBlock == 0; }
  /// An offset on a block boundary of the first process row (column): like offset 0 for pdormqr.
  static bool starts_block(std::int64_t offset, int procs) { return offset % (static_cast<std::int64_t>(kBlock) * procs) == 0; }
  static int first(std::int64_t offset) { return blas_int(offset + 1); }

  Distributed& dist(const View& v) {
    const auto it = m_matrices.find(v.base);
    if (it == m_matrices.end()) throw RuntimeError("ScaLAPACK engine: a view of a matrix it did not allocate");
    return *it->second;
  }

  int owner(std::int64_t global, int procs) const { return static_cast<int>((global / kBlock) % procs); }
  std::int64_t local_index(std::int64_t global, int procs) const {
    return (global / (static_cast<std::int64_t>(kBlock) * procs)) * kBlock + global % kBlock;
  }
  std::int64_t global_index(std::int64_t local, int me, int procs) const {
    return ((local / kBlock) * procs + me) * kBlock + local % kBlock;
  }

  /// f(i, j, element) for the elements of the block that this process holds (i, j within it).
  template <class F>
  void each(const View& v, F f) {
    if (v.rows == 0 || v.cols == 0) return;
    Distributed& d = dist(v);
    for (int lj = 0; lj < d.local_cols; ++lj) {
      const std::int64_t j = global_index(lj, m_mycol, m_pcol) - v.col0;
      if (j < 0 || j >= v.cols) continue;
      double* column = d.local.data() + static_cast<std::size_t>(lj) * static_cast<std::size_t>(d.lld);
      for (int li = 0; li < d.local_rows; ++li) {
        const std::int64_t i = global_index(li, m_myrow, m_prow) - v.row0;
        if (i >= 0 && i < v.rows) f(i, j, column[li]);
      }
    }
  }

  /// to := from, any blocks of any two distributed matrices of the same shape.
  void redistribute(const View& from, const View& to) {
    if (from.rows == 0 || from.cols == 0) return;
    Distributed& a = dist(from);
    Distributed& b = dist(to);
    const int m = blas_int(from.rows), n = blas_int(from.cols);
    const int ia = blas_int(from.row0 + 1), ja = blas_int(from.col0 + 1), ib = blas_int(to.row0 + 1),
              jb = blas_int(to.col0 + 1);
    pdgemr2d_(&m, &n, a.local.data(), &ia, &ja, a.desc, b.local.data(), &ib, &jb, b.desc, &m_context);
  }

  /// Element-wise sum over the processes, the same bits on every one.
  void sum(std::vector<double>& values) { m_processes.sum(values.data(), values.size()); }

  ProcessGroup& m_processes;
  int m_rank = 0, m_size = 1, m_prow = 1, m_pcol = 1, m_myrow = 0, m_mycol = 0, m_context = -1;
  std::map<const double*, std::shared_ptr<Distributed>> m_matrices;
  std::unique_ptr<Engine> m_cpu;
};

}  // namespace

std::unique_ptr<DistributedEngine> make_scalapack_engine(ProcessGroup& processes) {
  return std::make_unique<ScalapackEngine>(processes);
}

}  // namespace gpede::detail::linalg
