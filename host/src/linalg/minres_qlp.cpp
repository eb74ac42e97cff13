// MINRES-QLP (Choi, Paige and Saunders, SIAM J. Sci. Comput. 33, 2011). Step k of the Lanczos
// process gives column k of the tridiagonal T_k (alpha_k on the diagonal, beta_k and beta_{k+1}
// beside it). Left reflections Q_k reduce T_k to upper triangular R_k, as in MINRES; in the QLP
// phase right reflections P_k (one pair per step: P_{k-2,k}, then P_{k-1,k}) reduce R_k further
// to lower triangular L_k, with diagonal gamma, first subdiagonal theta and second subdiagonal eta.
// The solution is x_k = W_k u_k with L_k u_k = t_k (t_k the rotated right-hand side tau) and
// W_k = V_k P_k^T; the last three columns of W_k and entries of u_k change per step, the others
// are final, so x_k is carried as a fixed part plus three terms. In the MINRES phase x_k is
// updated as MINRES updates it; at the transition the QLP basis is rebuilt from MINRES's
// directions and the quantities kept from the step before.
//
// The recurrences, estimates (||A|| as the largest entry norm seen, cond(A) from the smallest
// |gamma|), stopping tests and codes are those of the published algorithm and of the code that
// pede runs, so that pede's iteration counts and stop codes are reproduced.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "gpede/detail/minres.hpp"
#include "lanczos.hpp"

namespace gpede::detail {
namespace {

double norm(const std::vector<double>& a) { return std::sqrt(dot(a, a)); }

double norm3(double a, double b, double c) { return std::sqrt(a * a + b * b + c * c); }

/// The reflection [c s; s -c] that maps (a, b) to (r, 0), computed without overflow, with
/// r >= 0 where b = 0 and the sign conventions of the published SymOrtho.
struct Reflection {
  double c = 0.0, s = 0.0, r = 0.0;
};

Reflection reflection(double a, double b) {
  constexpr double tiny = std::numeric_limits<double>::min();
  const double abs_a = std::abs(a), abs_b = std::abs(b);
  Reflection q;
  if (abs_b <= tiny) {
    q.s = 0.0;
    q.r = abs_a;
    q.c = a == 0.0 ? 1.0 : a / abs_a;
  } else if (abs_a <= tiny) {
    q.c = 0.0;
    q.r = abs_b;
    q.s = b / abs_b;
  } else if (abs_b > abs_a) {
    const double t = a / b;
    q.s = (b / abs_b) / std::sqrt(1.0 + t * t);
    q.c = q.s * t;
    q.r = b / q.s;
  } else {
    const double t = b / a;
    q.c = (a / abs_a) / std::sqrt(1.0 + t * t);
    q.s = q.c * t;
    q.r = a / q.c;
  }
  return q;
}

/// The MINRES code nearest to a MINRES-QLP code, for callers that act on the kind of stop.
MinresStop nearest_minres_stop(MinresQlpStop stop) {
  switch (stop) {
    case MinresQlpStop::none: return MinresStop::iteration_limit;
    case MinresQlpStop::lanczos_end: return MinresStop::converged_eps;
    case MinresQlpStop::eigenvector_rhs: return MinresStop::eigenvector;
    case MinresQlpStop::zero_rhs: return MinresStop::zero_rhs;
    case MinresQlpStop::solved_rtol:
    case MinresQlpStop::least_squares_rtol:
    case MinresQlpStop::null_vector: return MinresStop::converged;
    case MinresQlpStop::solved_eps:
    case MinresQlpStop::least_squares_eps: return MinresStop::converged_eps;
    case MinresQlpStop::iteration_limit:
    case MinresQlpStop::least_squares_unconverged: return MinresStop::iteration_limit;
    case MinresQlpStop::matrix_not_symmetric:
    case MinresQlpStop::preconditioner_not_symmetric: return MinresStop::matrix_not_symmetric;
    case MinresQlpStop::preconditioner_indefinite: return MinresStop::preconditioner_indefinite;
    case MinresQlpStop::x_norm_limit:
    case MinresQlpStop::ill_conditioned: return MinresStop::ill_conditioned;
  }
  return MinresStop::iteration_limit;
}

}  // namespace

std::string minres_qlp_stop_text(MinresQlpStop stop) {
  switch (stop) {
    case MinresQlpStop::none: return "not stopped";
    case MinresQlpStop::lanczos_end: return "beta_{k+1} < eps";
    case MinresQlpStop::eigenvector_rhs: return "beta2 = 0: if M = I, b and x are eigenvectors of A";
    case MinresQlpStop::zero_rhs: return "beta1 = 0: the exact solution is x = 0";
    case MinresQlpStop::solved_rtol: return "a solution to (poss. singular) Ax = b found, given rtol";
    case MinresQlpStop::solved_eps: return "a solution to (poss. singular) Ax = b found, given eps";
    case MinresQlpStop::least_squares_rtol: return "pseudoinverse solution for singular LS problem, given rtol";
    case MinresQlpStop::least_squares_eps: return "pseudoinverse solution for singular LS problem, given eps";
    case MinresQlpStop::iteration_limit: return "the iteration limit was reached";
    case MinresQlpStop::matrix_not_symmetric: return "the operator A appears to be unsymmetric";
    case MinresQlpStop::preconditioner_not_symmetric: return "the preconditioner appears to be unsymmetric";
    case MinresQlpStop::preconditioner_indefinite: return "the preconditioner appears to be indefinite";
    case MinresQlpStop::x_norm_limit: return "xnorm has exceeded maxxnorm or will exceed it next iteration";
    case MinresQlpStop::ill_conditioned: return "Acond has exceeded Acondlim or 0.1/eps";
    case MinresQlpStop::least_squares_unconverged: return "least-squares problem but no converged solution yet";
    case MinresQlpStop::null_vector: return "a null vector obtained, given rtol";
  }
  return "unknown stop code";
}

MinresOutcome minres_qlp(const VectorMap& multiply, const VectorMap& precondition, const std::vector<double>& b,
                         const MinresSettings& settings) {
  constexpr double eps = std::numeric_limits<double>::epsilon();
  // Powers of ten below 1/eps and 1/sqrt(eps): the published code's limits.
  const double inverse_eps_power = std::pow(10.0, std::floor(std::log10(1.0 / eps)));
  const double sqrt_limit = std::pow(10.0, std::floor(std::log10(1.0 / eps) / 2.0));
  const double x_limit = std::min(settings.max_x_norm > 0.0 ? settings.max_x_norm : sqrt_limit, 1.0 / eps);
  const double transition = std::min(settings.transition_condition, sqrt_limit);
  const double cond_limit = inverse_eps_power;
  const double rtol = settings.rtol;
  const std::size_t n = b.size();

  MinresOutcome out;
  out.x.assign(n, 0.0);
  std::vector<double>& x = out.x;
  auto finish = [&](MinresQlpStop stop) {
    out.qlp_stop = stop;
    out.stop = nearest_minres_stop(stop);
    return out;
  };

  std::vector<double> y0 = b;
  if (precondition) precondition(b, y0);
  Lanczos lanczos(b, std::move(y0));
  std::vector<double>& y = lanczos.y;
  const std::vector<double>& v = lanczos.v;
  double beta1 = dot(b, y);
  if (beta1 < 0.0 && norm(y) > eps) return finish(MinresQlpStop::preconditioner_indefinite);
  if (beta1 == 0.0) return finish(MinresQlpStop::zero_rhs);
  beta1 = std::sqrt(beta1);

  // Directions: w (column k of W), w1 (k-1), w2 (k-2); x_fixed holds the final part of x in the
  // QLP phase.
  std::vector<double> w(n, 0.0), w1(n, 0.0), w2(n, 0.0), x_fixed(n, 0.0);

  double beta = 0.0, beta_next = beta1;
  // Left reflection (c, s) and the entries it carries into the next column.
  double c = -1.0, s = 0.0, delta_bar_next = 0.0, epsilon_next = 0.0;
  // Right reflections P_{k-1,k} (c1, s1) and P_{k-2,k} (c2, s2).
  double c1 = -1.0, s1 = 0.0, c2 = -1.0, s2 = 0.0;
  // L's entries: gamma_k, gamma_{k-1}, gamma_{k-2}, gamma_{k-3}; theta_k, theta_{k-1},
  // theta_{k-2}; eta_k, eta_{k-1}, eta_{k-2}; the rotated right-hand side tau and phi = ||r||.
  double gamma = 0.0, gamma1 = 0.0, gamma2 = 0.0, gamma3 = 0.0;
  double theta = 0.0, theta1 = 0.0, theta2 = 0.0;
  double eta = 0.0, eta1 = 0.0, eta2 = 0.0;
  double tau = 0.0, tau1 = 0.0, tau2 = 0.0, phi = beta1;
  // The solution of L u = t: u_k, u_{k-1}, u_{k-2}, u_{k-3}.
  double u = 0.0, u1 = 0.0, u2 = 0.0, u3 = 0.0;
  // What the transition to the QLP phase needs from the step before.
  double gamma1_qlp = 0.0, theta_qlp = 0.0, gamma_qlp = 0.0, u1_qlp = 0.0, u_qlp = 0.0;
  // Norms and estimates.
  double x_norm = 0.0, x_fixed_norm = 0.0, a_norm = 0.0, a_cond = 1.0;
  double gmin = 0.0, gmin1 = 0.0;
  double r_norm = beta1, rel_res = r_norm / (a_norm * x_norm + beta1), rel_res_prev = 0.0, rel_ares_prev = 0.0;
  double t1 = 2.0, t2 = 2.0;
  std::int64_t itn = 0, qlp_itn = 0;
  bool last_iteration = false;
  MinresQlpStop stop = MinresQlpStop::none;

  while (stop == MinresQlpStop::none) {
    ++itn;
    // Lanczos step k: v_k, alpha_k, beta_{k+1}.
    const double beta_prev = beta;
    beta = beta_next;
    const double alpha = lanczos.step(multiply, beta, beta_prev, itn == 1);
    if (!precondition) {
      beta_next = norm(y);
    } else {
      precondition(lanczos.r_cur, y);
      beta_next = dot(lanczos.r_cur, y);
      if (beta_next > 0.0) {
        beta_next = std::sqrt(beta_next);
      } else if (norm(y) > eps) {
        stop = MinresQlpStop::preconditioner_indefinite;
        break;
      }
    }
    const double column_norm = itn == 1 ? std::hypot(alpha, beta_next) : norm3(beta, alpha, beta_next);

    // The previous left reflection on column k, then the new one.
    const double delta_bar = delta_bar_next;
    double delta = c * delta_bar + s * alpha;
    const double epsilon = epsilon_next;
    const double gamma_bar = s * delta_bar - c * alpha;
    epsilon_next = s * beta_next;
    delta_bar_next = -c * beta_next;
    const double delta_minres = delta;
    gamma3 = gamma2;
    gamma2 = gamma1;
    gamma1 = gamma;
    const Reflection left = reflection(gamma_bar, beta_next);
    c = left.c;
    s = left.s;
    gamma = left.r;
    const double gamma_minres = gamma;
    tau2 = tau1;
    tau1 = tau;
    tau = c * phi;
    phi = s * phi;

    // The right reflection P_{k-2,k} from the step before, then the new P_{k-1,k}.
    if (itn > 2) {
      theta2 = theta1;
      eta2 = eta1;
      eta1 = eta;
      const double d = s2 * theta - c2 * delta;
      theta1 = c2 * theta + s2 * delta;
      delta = d;
      eta = s2 * gamma;
      gamma = -c2 * gamma;
    }
    if (itn > 1) {
      const Reflection right = reflection(gamma1, delta);
      c1 = right.c;
      s1 = right.s;
      gamma1 = right.r;
      theta = s1 * gamma;
      gamma = -c1 * gamma;
    }

    // Forward substitution for the entries of u that changed.
    const double u4 = u3;
    u3 = u2;
    if (itn > 2) u2 = (tau2 - eta2 * u4 - theta2 * u3) / gamma2;
    if (itn > 1) u1 = (tau1 - eta1 * u3 - theta1 * u2) / gamma1;
    const double x_norm_before = norm3(x_fixed_norm, u2, u1);
    if (std::abs(gamma) > eps) {
      u = (tau - eta * u2 - theta * u1) / gamma;
      const bool like_least_squares = rel_ares_prev < rel_res_prev;
      if (like_least_squares && std::hypot(x_norm_before, u) > x_limit) {
        u = 0.0;
        stop = MinresQlpStop::x_norm_limit;
      }
    } else {
      u = 0.0;
      stop = MinresQlpStop::least_squares_unconverged;
    }
    x_fixed_norm = std::hypot(x_fixed_norm, u2);
    x_norm = norm3(x_fixed_norm, u1, u);

    if (a_cond < transition && stop == MinresQlpStop::none && qlp_itn == 0) {
      // MINRES phase: w_k = (v_k - epsilon_k w_{k-2} - delta_k w_{k-1}) / gamma_k, x += tau_k w_k.
      std::swap(w2, w1);  // w2 := w_{k-2}
      std::swap(w1, w);   // w1 := w_{k-1}; w keeps w_{k-2}'s storage
      if (gamma_minres > eps) {
        const double inv_gamma = 1.0 / gamma_minres;
        for (std::size_t i = 0; i < n; ++i) w[i] = (v[i] - epsilon * w2[i] - delta_minres * w1[i]) * inv_gamma;
      } else {
        w = w1;
      }
      if (x_norm < x_limit) {
        for (std::size_t i = 0; i < n; ++i) x[i] += tau * w[i];
      } else {
        stop = MinresQlpStop::x_norm_limit;
        last_iteration = true;
      }
    } else {
      ++qlp_itn;
      if (qlp_itn == 1) {
        // The transition: MINRES's directions turned into the columns of W = V P^T, and the
        // part of x that is final.
        std::fill(x_fixed.begin(), x_fixed.end(), 0.0);
        if (itn > 1) {
          for (std::size_t i = 0; i < n; ++i) {
            if (itn > 3) w2[i] = gamma3 * w2[i] + theta2 * w1[i] + eta1 * w[i];
            if (itn > 2) w1[i] = gamma1_qlp * w1[i] + theta_qlp * w[i];
            w[i] = gamma_qlp * w[i];
            x_fixed[i] = x[i] - u1_qlp * w1[i] - u_qlp * w[i];
          }
        }
      }
      for (std::size_t i = 0; i < n; ++i) {
        const double a = w1[i], bk = w[i], vi = v[i];
        if (itn == 1) {
          w2[i] = a;
          w1[i] = s1 * vi;
          w[i] = -c1 * vi;
        } else if (itn == 2) {
          w2[i] = a;
          w1[i] = c1 * bk + s1 * vi;
          w[i] = s1 * bk - c1 * vi;
        } else {
          const double rotated = s2 * a - c2 * vi;
          w2[i] = c2 * a + s2 * vi;
          w1[i] = c1 * bk + s1 * rotated;
          w[i] = s1 * bk - c1 * rotated;
        }
        x_fixed[i] += u2 * w2[i];
        x[i] = x_fixed[i] + u1 * w1[i] + u * w[i];
      }
    }

    // The next right reflection P_{k-1,k+1}, which removes epsilon_{k+1}; what the transition
    // would need.
    gamma1_qlp = gamma1;
    const Reflection next = reflection(gamma1, epsilon_next);
    c2 = next.c;
    s2 = next.s;
    gamma1 = next.r;
    theta_qlp = theta;
    gamma_qlp = gamma;
    u1_qlp = u1;
    u_qlp = u;

    // Estimates.
    const double abs_gamma = std::abs(gamma);
    a_norm = std::max({a_norm, column_norm, gamma1, abs_gamma});
    if (itn == 1) {
      gmin = gamma;
      gmin1 = gmin;
    } else {
      const double gmin2 = gmin1;
      gmin1 = gmin;
      gmin = std::min({gmin2, gamma1, abs_gamma});
    }
    const double a_cond_prev = a_cond;
    a_cond = a_norm / gmin;
    const double r_norm_prev = r_norm;
    rel_res_prev = rel_res;
    if (stop != MinresQlpStop::least_squares_unconverged) r_norm = phi;
    rel_res = r_norm / (a_norm * x_norm + beta1);
    const double root = std::hypot(gamma_bar, delta_bar_next);
    rel_ares_prev = root / a_norm;
    const double eps_x = a_norm * x_norm * eps;
    if (stop == MinresQlpStop::none || stop == MinresQlpStop::least_squares_unconverged) {
      t1 = 1.0 + rel_res;
      t2 = 1.0 + rel_ares_prev;
    }
    if (t1 <= 1.0) {
      stop = MinresQlpStop::solved_eps;
    } else if (t2 <= 1.0) {
      stop = MinresQlpStop::least_squares_eps;
    } else if (rel_res <= rtol) {
      stop = MinresQlpStop::solved_rtol;
    } else if (rel_ares_prev <= rtol) {
      stop = MinresQlpStop::least_squares_rtol;
    } else if (eps_x >= beta1) {
      stop = MinresQlpStop::eigenvector_rhs;
    } else if (x_norm >= x_limit) {
      stop = MinresQlpStop::x_norm_limit;
    } else if (a_cond >= cond_limit || a_cond >= 0.1 / eps) {
      stop = MinresQlpStop::ill_conditioned;
    } else if (itn >= settings.iteration_limit) {
      stop = MinresQlpStop::iteration_limit;
    } else if (beta_next < eps) {
      stop = MinresQlpStop::lanczos_end;
    }
    out.iterations = itn;
    out.a_norm = a_norm;
    out.a_cond = a_cond;
    out.r_norm = r_norm;
    if (stop != MinresQlpStop::none) {
      if (stop == MinresQlpStop::least_squares_rtol || stop == MinresQlpStop::least_squares_eps ||
          stop == MinresQlpStop::x_norm_limit || stop == MinresQlpStop::ill_conditioned) {
        last_iteration = true;
      }
      if (last_iteration) {
        // The estimates of the step before, which the stop refers to.
        out.iterations = itn - 1;
        out.a_cond = a_cond_prev;
        out.r_norm = r_norm_prev;
      }
    }
  }
  out.qlp_iterations = qlp_itn;
  out.y_norm = x_norm;
  // ||A r|| of the final x, computed.
  std::vector<double> ax(n), ar(n);
  multiply(x, ax);
  for (std::size_t i = 0; i < n; ++i) ax[i] = b[i] - ax[i];
  multiply(ax, ar);
  out.ar_norm = norm(ar);
  return finish(stop);
}

}  // namespace gpede::detail
