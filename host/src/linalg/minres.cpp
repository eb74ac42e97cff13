// Preconditioned MINRES: the Lanczos process on M^-1 A builds a symmetric tridiagonal matrix
// T_k, whose QR factorisation (by Givens rotations, updated one column per step) minimises the
// residual over the Krylov space; the iterate is updated from a three-term recurrence of search
// directions. Norm and condition estimates come from T_k and the rotations.
#include "gpede/detail/minres.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "lanczos.hpp"

namespace gpede::detail {

std::string minres_stop_text(MinresStop stop) {
  switch (stop) {
    case MinresStop::special_rhs: return "beta2 = 0: the right-hand side is an eigenvector";
    case MinresStop::zero_rhs: return "the right-hand side is zero: the exact solution is x = 0";
    case MinresStop::converged: return "requested accuracy achieved, as determined by rtol";
    case MinresStop::converged_eps: return "reasonable accuracy achieved, given eps";
    case MinresStop::eigenvector: return "x has converged to an eigenvector";
    case MinresStop::ill_conditioned: return "matrix ill-conditioned (Acond has exceeded 0.1/eps)";
    case MinresStop::iteration_limit: return "the iteration limit was reached";
    case MinresStop::matrix_not_symmetric: return "matrix x vector does not define a symmetric matrix";
    case MinresStop::preconditioner_indefinite: return "the preconditioner is indefinite";
  }
  return "unknown stop code";
}

MinresOutcome minres(const VectorMap& multiply, const VectorMap& precondition, const std::vector<double>& b,
                     const MinresSettings& settings) {
  if (settings.qlp) return minres_qlp(multiply, precondition, b, settings);
  constexpr double eps = std::numeric_limits<double>::epsilon();
  const std::size_t n = b.size();
  MinresOutcome out;
  out.x.assign(n, 0.0);

  // The Lanczos vectors; search directions w (the last) and w_prev (the one before).
  std::vector<double> y0 = b;
  if (precondition) precondition(b, y0);
  Lanczos lanczos(b, std::move(y0));
  std::vector<double>& y = lanczos.y;
  const std::vector<double>& v = lanczos.v;
  std::vector<double> w(n, 0.0), w_prev(n, 0.0);
  double beta1 = dot(b, y);
  if (beta1 < 0.0) {
    out.stop = MinresStop::preconditioner_indefinite;
    return out;
  }
  if (beta1 == 0.0) {
    out.stop = MinresStop::zero_rhs;
    return out;
  }
  beta1 = std::sqrt(beta1);

  double beta = beta1, beta_old = 0.0;
  double dbar = 0.0, eps_ln = 0.0, phibar = beta1, rhs1 = beta1, rhs2 = 0.0;
  double tnorm2 = 0.0, ynorm2 = 0.0, gmax = 0.0, gmin = 0.0;
  double cs = -1.0, sn = 0.0;
  bool special = false;  // beta2 = 0 after the first step: stop after it
  std::int64_t itn = 0;
  for (;;) {
    ++itn;
    const double alpha = lanczos.step(multiply, beta, beta_old, itn == 1);
    if (precondition) precondition(lanczos.r_cur, y);
    beta_old = beta;
    beta = dot(lanczos.r_cur, y);
    if (beta < 0.0) {
      out.stop = MinresStop::matrix_not_symmetric;
      break;
    }
    beta = std::sqrt(beta);
    tnorm2 += alpha * alpha + beta_old * beta_old + beta * beta;
    if (itn == 1) {
      special = beta / beta1 <= 10.0 * eps;
      gmax = gmin = std::abs(alpha);
    }

    // Apply the previous rotation to the new column of T, then the new rotation.
    const double eps_old = eps_ln;
    const double delta = cs * dbar + sn * alpha;
    const double gbar = sn * dbar - cs * alpha;
    eps_ln = sn * beta;
    dbar = -cs * beta;
    const double gamma = std::sqrt(gbar * gbar + beta * beta);
    cs = gbar / gamma;
    sn = beta / gamma;
    const double phi = cs * phibar;
    phibar = sn * phibar;

    const double inv_gamma = 1.0 / gamma;
    for (std::size_t i = 0; i < n; ++i) {
      const double wi = (v[i] - eps_old * w_prev[i] - delta * w[i]) * inv_gamma;
      w_prev[i] = w[i];
      w[i] = wi;
      out.x[i] += phi * wi;
    }
    gmax = std::max(gmax, gamma);
    gmin = std::min(gmin, gamma);
    const double z = rhs1 / gamma;
    ynorm2 += z * z;
    rhs1 = rhs2 - delta * z;
    rhs2 = -eps_ln * z;

    out.a_norm = std::sqrt(tnorm2);
    out.y_norm = std::sqrt(ynorm2);
    const double eps_x = out.a_norm * out.y_norm * eps;
    const double eps_r = out.a_norm * out.y_norm * settings.rtol;
    const double r_norm_prev = out.r_norm;
    out.r_norm = phibar;
    const double root = std::sqrt(gbar * gbar + dbar * dbar);
    out.ar_norm = r_norm_prev * root;
    const double rel_ar_norm = root / out.a_norm;
    out.a_cond = gmax / gmin;
    out.iterations = itn;

    if (special) {
      out.stop = MinresStop::special_rhs;
      break;
    }
    if (out.r_norm <= eps_r || rel_ar_norm <= settings.rtol) {
      out.stop = MinresStop::converged;
    } else if (out.r_norm <= eps_x || rel_ar_norm <= eps) {
      out.stop = MinresStop::converged_eps;
    } else if (eps_x >= beta1) {
      out.stop = MinresStop::eigenvector;
    } else if (out.a_cond >= 0.1 / eps) {
      out.stop = MinresStop::ill_conditioned;
    } else if (itn >= settings.iteration_limit) {
      out.stop = MinresStop::iteration_limit;
    } else {
      continue;
    }
    break;
  }
  return out;
}

}  // namespace gpede::detail
