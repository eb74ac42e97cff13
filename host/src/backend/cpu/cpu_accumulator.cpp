// CPU accumulation of a pass over the data: a small pool of worker threads splits each batch's
// records round-robin in chunks; each thread fits its records with the per-record kernels on its own scratch,
// keeps private sums (chi2, F, ndf, counters, b, entries per label) and adds the Schur
// contributions into the shared global matrix: dense (lower triangle, mirrored at end_pass), sparse
// or packed (private copies per thread where they fit a quarter of the memory, else shared: atomic
// adds, or for packed storage plain adds under a lock per column). end_pass reduces the private sums.
#include "gpede/detail/cpu_accumulator.hpp"
#include "gpede/detail/batch_layout.hpp"
#include "gpede/detail/worker_pool.hpp"

#include <algorithm>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "gpede/error.hpp"
#include "gpede/detail/packed_solution.hpp"
#include "gpede/detail/sparse_matrix.hpp"
#include "gpede/kernels/local_fit.hpp"

namespace gpede::detail {

const kernels::LocalFitScratch& LocalFitWorkspace::ensure(const kernels::RecordShape& shape, const RecordBatch& batch,
                                                          std::int64_t r, std::size_t limit, const std::string& who) {
  if (shape.measurements <= m_capacity.measurements && shape.local_parameters <= m_capacity.local_parameters &&
      shape.global_entries <= m_capacity.global_entries && shape.unique_globals <= m_capacity.unique_globals &&
      !m_buffer.empty()) {
    return m_scratch;
  }
  const kernels::RecordShape wanted = kernels::max_shape(m_capacity, shape);
  const std::size_t bytes = kernels::local_fit_scratch_bytes(wanted);
  if (bytes > limit) {
    throw RuntimeError(who + ": the local fit of " + record_name(batch, r) + " (" + std::to_string(shape.measurements) +
                       " measurements, " + std::to_string(shape.local_parameters) + " local and " +
                       std::to_string(shape.global_entries) + " global derivatives) needs " +
                       std::to_string(bytes >> 20) + " MiB of scratch per thread, more than the " +
                       std::to_string(limit >> 20) + " MiB this machine allows a thread");
  }
  m_buffer = std::vector<double>();
  m_buffer.assign(bytes / sizeof(double) + 1, 0.0);
  m_capacity = wanted;
  m_scratch = kernels::make_local_fit_scratch(m_buffer.data(), m_capacity);
  return m_scratch;
}

namespace {

/// What one thread owns during a pass.
struct ThreadState {
  PassTotals sums;  // rhs and entries_accepted used as per-thread partial arrays
  LocalFitWorkspace workspace;
  std::exception_ptr error;
  std::vector<double> private_matrix;  // this thread's partial global matrix (see begin_pass)
  double* matrix_target = nullptr;     // where this thread adds its Schur contributions
  std::vector<std::int32_t> run_end;   // add_matrix's runs of consecutive indices
};

}  // namespace

struct CpuAccumulator::Impl {
  explicit Impl(int threads) : pool(threads), scratch_limit(scratch_limit_bytes(pool.size())) {}

  /// A thread's local-fit scratch may take a quarter of the physical memory shared by the threads.
  static std::size_t scratch_limit_bytes(int n_threads) {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGE_SIZE);
    const double physical = pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 8e9;
    return static_cast<std::size_t>(0.25 * physical / static_cast<double>(std::max(1, n_threads)));
  }

  WorkerPool pool;
  std::size_t scratch_limit;
  bool in_pass = false;
  bool building = false;
  bool private_matrices = false;
  PassSetup setup;
  kernels::GlobalStateView state;
  kernels::LocalFitOptions options;
  std::vector<ThreadState> threads;
  std::vector<double> matrix;
  SparseMatrix* sparse = nullptr;  // the sparse target of building passes, if set
  PackedMatrix* packed = nullptr;  // the packed target of building passes, if set

  /// The values of a sparse or packed target; null for the dense matrix.
  std::vector<double>* target_values() {
    if (sparse != nullptr) return &sparse->values();
    if (packed != nullptr) return &packed->values();
    return nullptr;
  }
  std::int64_t n = 0;

  /// Adds the lower triangle of a record's contribution into the global matrix (column-major,
  /// lower triangle). Without atomics, column by column over runs of consecutive indices (a
  /// sensor's or a layer's parameters): contiguous adds instead of one gather-scatter per element.
  void add_matrix(const kernels::GlobalContribution& c, bool atomic, double* base, std::vector<std::int32_t>& run_end) {
    if (sparse != nullptr) {
      sparse->add(c, base, atomic);
      return;
    }
    if (packed != nullptr) {
      packed->add(c, base, atomic);
      return;
    }
    const std::int32_t k = c.size;
    if (atomic) {
      for (std::int32_t b = 0; b < k; ++b) {
        const double* column = c.matrix + static_cast<std::int64_t>(b) * k;
        double* target = base + static_cast<std::int64_t>(c.index[b]) * n;
        for (std::int32_t a = b; a < k; ++a) {
          std::atomic_ref<double>(target[c.index[a]]).fetch_add(column[a], std::memory_order_relaxed);
        }
      }
      return;
    }
    // run_end[a]: one past the last slot of the run of consecutive indices that holds slot a
    run_end.resize(static_cast<std::size_t>(k));
    if (k > 0) run_end[static_cast<std::size_t>(k - 1)] = k;
    for (std::int32_t a = k - 2; a >= 0; --a) {
      run_end[static_cast<std::size_t>(a)] = c.index[a + 1] == c.index[a] + 1 ? run_end[static_cast<std::size_t>(a + 1)] : a + 1;
    }
    for (std::int32_t b = 0; b < k; ++b) {
      const double* column = c.matrix + static_cast<std::int64_t>(b) * k;
      double* target = base + static_cast<std::int64_t>(c.index[b]) * n;
      for (std::int32_t a = b; a < k;) {
        const std::int32_t end = run_end[static_cast<std::size_t>(a)];
        double* to = target + c.index[a];
        const double* from = column + a;
        const std::int32_t length = end - a;
        for (std::int32_t j = 0; j < length; ++j) to[j] += from[j];
        a = end;
      }
    }
  }

  void process_record(ThreadState& ts, const RecordBatch& batch, const kernels::RecordBatchView& view,
                      std::int64_t r, bool atomic) {
    // the per-record functions take their input as valid: every record is checked here first
    if (const std::string problem = record_problem(batch, r, state.n_all); !problem.empty()) {
      throw RuntimeError("CPU accumulator: " + record_name(batch, r) + " " + problem);
    }
    const kernels::LocalFitScratch& scratch =
        ts.workspace.ensure(kernels::record_shape(view, r), batch, r, scratch_limit, "CPU accumulator");

    PassTotals& sums = ts.sums;
    ++sums.records;
    const kernels::LocalFitResult fit = kernels::fit_record(view, state, r, options, scratch);
    if (fit.counts_ndf()) {
      sums.ndf_sum += fit.ndf;
      sums.weighted_ndf_sum += fit.record_weight * fit.ndf;
    }
    sums.function_value += fit.function_value;
    switch (fit.status) {
      case kernels::LocalFitStatus::accepted:
        break;
      case kernels::LocalFitStatus::no_local_parameters:
        return;
      case kernels::LocalFitStatus::rank_deficient:
        ++sums.rejected_rank;
        return;
      case kernels::LocalFitStatus::no_degrees_of_freedom:
        ++sums.rejected_ndf;
        return;
      case kernels::LocalFitStatus::huge_chi2:
        ++sums.rejected_huge;
        return;
      case kernels::LocalFitStatus::chi2_cut:
        ++sums.rejected_cut;
        return;
      case kernels::LocalFitStatus::downweight_fraction:
        ++sums.rejected_downweight;
        return;
      case kernels::LocalFitStatus::scratch_too_small:
        throw RuntimeError("CPU accumulator: scratch too small for " + record_name(batch, r));
    }
    ++sums.accepted;
    sums.chi2_sum += fit.function_value;
    const kernels::GlobalContribution c = kernels::global_contribution(view, state, r, fit, scratch, building);
    if (!c.ok) throw RuntimeError("CPU accumulator: scratch too small for the globals of " + record_name(batch, r));
    for (std::int32_t k = 0; k < c.size; ++k) {
      sums.rhs[c.index[k]] += c.vector[k];
      sums.entries_accepted[c.label[k]] += c.entries[k];
    }
    if (building) add_matrix(c, atomic, ts.matrix_target, ts.run_end);
  }

  // Mirrors the lower triangle into the upper one, in blocks, split over the threads.
  void symmetrise() {
    constexpr std::int64_t block = 64;
    const std::int64_t n_blocks = (n + block - 1) / block;
    std::atomic<std::int64_t> next{0};
    double* m = matrix.data();
    const std::int64_t nn = n;
    pool.run([&](int) {
      for (std::int64_t jb = next.fetch_add(1); jb < n_blocks; jb = next.fetch_add(1)) {
        const std::int64_t j0 = jb * block;
        const std::int64_t j1 = std::min(nn, j0 + block);
        for (std::int64_t i0 = j0; i0 < nn; i0 += block) {
          const std::int64_t i1 = std::min(nn, i0 + block);
          for (std::int64_t i = i0; i < i1; ++i) {
            const std::int64_t j_end = std::min(j1, i);
            for (std::int64_t j = j0; j < j_end; ++j) m[i * nn + j] = m[j * nn + i];
          }
        }
      }
    });
  }

  /// With several threads, each thread but the first adds into a private copy of the matrix when
  /// the copies fit the memory budget (a quarter of the physical memory): no atomic adds, which cost
  /// a compare-and-swap each and serialise on shared cache lines. Else all threads add atomically
  /// into the one matrix.
  void assign_matrix_targets() {
    std::vector<double>* values = target_values();
    const std::size_t size = values != nullptr ? values->size() : static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
    double* shared = values != nullptr ? values->data() : matrix.data();
    const std::size_t extra = (threads.size() - 1) * size * sizeof(double);
    const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
    private_matrices = threads.size() > 1 && static_cast<double>(extra) <= 0.25 * physical;
    for (std::size_t t = 0; t < threads.size(); ++t) {
      ThreadState& ts = threads[t];
      if (private_matrices && t > 0) {
        ts.private_matrix.assign(size, 0.0);
        ts.matrix_target = ts.private_matrix.data();
      } else {
        ts.private_matrix = std::vector<double>();
        ts.matrix_target = shared;
      }
    }
  }

  /// Adds the private copies into the matrix and releases them.
  void reduce_private_matrices() {
    if (!private_matrices) return;
    std::vector<double>* values = target_values();
    const std::size_t size = values != nullptr ? values->size() : matrix.size();
    const int n_threads = pool.size();
    double* m = values != nullptr ? values->data() : matrix.data();
    pool.run([&](int t) {
      const std::size_t begin = size * static_cast<std::size_t>(t) / static_cast<std::size_t>(n_threads);
      const std::size_t end = size * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(n_threads);
      for (std::size_t k = 1; k < threads.size(); ++k) {
        const double* p = threads[k].private_matrix.data();
        for (std::size_t i = begin; i < end; ++i) m[i] += p[i];
      }
    });
    for (std::size_t k = 1; k < threads.size(); ++k) threads[k].private_matrix = std::vector<double>();
    private_matrices = false;
  }

  void zero_matrix() {
    if (sparse != nullptr) {
      matrix = std::vector<double>();
      sparse->zero();
      return;
    }
    if (packed != nullptr) {
      matrix = std::vector<double>();
      packed->reset(n);
      return;
    }
    const std::size_t size = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
    if (matrix.size() != size) {
      matrix = std::vector<double>();
      matrix.resize(size);
      return;
    }
    const int n_threads = pool.size();
    double* m = matrix.data();
    pool.run([&](int t) {
      const std::size_t begin = size * static_cast<std::size_t>(t) / static_cast<std::size_t>(n_threads);
      const std::size_t end = size * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(n_threads);
      std::fill(m + begin, m + end, 0.0);
    });
  }
};


CpuAccumulator::CpuAccumulator(int threads) : m_impl(std::make_unique<Impl>(threads > 0 ? threads : usable_cpus())) {
  m_impl->threads.resize(static_cast<std::size_t>(m_impl->pool.size()));
}

int CpuAccumulator::threads() const { return m_impl->pool.size(); }

void CpuAccumulator::set_sparse_target(SparseMatrix* target) { m_impl->sparse = target; }

void CpuAccumulator::set_packed_target(PackedMatrix* target) { m_impl->packed = target; }

CpuAccumulator::~CpuAccumulator() = default;

void CpuAccumulator::begin_pass(const PassSetup& setup) {
  Impl& impl = *m_impl;
  if (setup.n_all < 0 || setup.n_variable < 0 || static_cast<std::int64_t>(setup.parameter_value.size()) != setup.n_all ||
      static_cast<std::int64_t>(setup.variable_index.size()) != setup.n_all) {
    throw RuntimeError("CPU accumulator: pass setup sizes disagree (parameter_value and variable_index need n_all entries)");
  }
  for (const std::int32_t v : setup.variable_index) {
    if (v >= setup.n_variable) throw RuntimeError("CPU accumulator: variable index beyond n_variable in the pass setup");
  }
  impl.setup = setup;
  impl.options = setup.fit;
  impl.state.n_all = setup.n_all;
  impl.state.n_variable = setup.n_variable;
  impl.state.parameter_value = impl.setup.parameter_value.data();
  impl.state.variable_index = impl.setup.variable_index.data();
  impl.building = setup.build_matrix;
  impl.n = setup.n_variable;
  for (ThreadState& ts : impl.threads) {
    ts.sums = PassTotals();
    ts.sums.rhs.assign(static_cast<std::size_t>(setup.n_variable), 0.0);
    ts.sums.entries_accepted.assign(static_cast<std::size_t>(setup.n_all), 0);
    ts.error = nullptr;
  }
  if (impl.building) {
    impl.zero_matrix();
    impl.assign_matrix_targets();
  }
  impl.in_pass = true;
}

void CpuAccumulator::accumulate(const RecordBatch& batch) {
  Impl& impl = *m_impl;
  if (!impl.in_pass) throw RuntimeError("CPU accumulator: accumulate called outside a pass (begin_pass first)");
  check_batch_layout(batch, "CPU accumulator");
  const kernels::RecordBatchView view = host_view(batch);
  const std::int64_t n_records = view.n_records;
  if (n_records == 0) return;
  const int n_threads = impl.pool.size();
  const bool atomic = n_threads > 1 && !impl.private_matrices;
  const std::int64_t chunk = std::clamp<std::int64_t>(n_records / (8 * n_threads), 1, 64);
  // Chunks are dealt round-robin, not taken as threads come free: each thread's private sums then
  // hold the same records in the same order on every run, and the pass sums are reproducible bit
  // for bit at a given thread count (with atomic matrix adds, only the vector and the sums are).
  std::atomic<bool> failed{false};
  impl.pool.run([&](int t) {
    ThreadState& ts = impl.threads[static_cast<std::size_t>(t)];
    try {
      for (std::int64_t begin = chunk * t; begin < n_records && !failed.load(std::memory_order_relaxed);
           begin += chunk * n_threads) {
        const std::int64_t end = std::min(n_records, begin + chunk);
        for (std::int64_t r = begin; r < end; ++r) impl.process_record(ts, batch, view, r, atomic);
      }
    } catch (...) {
      ts.error = std::current_exception();
      failed.store(true);
    }
  });
  for (ThreadState& ts : impl.threads) {
    if (ts.error) {
      std::exception_ptr error = ts.error;
      ts.error = nullptr;
      impl.in_pass = false;
      std::rethrow_exception(error);
    }
  }
}

PassTotals CpuAccumulator::end_pass() {
  Impl& impl = *m_impl;
  if (!impl.in_pass) throw RuntimeError("CPU accumulator: end_pass called outside a pass");
  impl.in_pass = false;
  PassTotals totals;
  totals.rhs.assign(static_cast<std::size_t>(impl.setup.n_variable), 0.0);
  totals.entries_accepted.assign(static_cast<std::size_t>(impl.setup.n_all), 0);
  for (const ThreadState& ts : impl.threads) {
    const PassTotals& s = ts.sums;
    totals.chi2_sum += s.chi2_sum;
    totals.function_value += s.function_value;
    totals.ndf_sum += s.ndf_sum;
    totals.weighted_ndf_sum += s.weighted_ndf_sum;
    totals.rejected_ndf += s.rejected_ndf;
    totals.records += s.records;
    totals.accepted += s.accepted;
    totals.rejected_rank += s.rejected_rank;
    totals.rejected_huge += s.rejected_huge;
    totals.rejected_cut += s.rejected_cut;
    totals.rejected_downweight += s.rejected_downweight;
    for (std::size_t k = 0; k < totals.rhs.size(); ++k) totals.rhs[k] += s.rhs[k];
    for (std::size_t k = 0; k < totals.entries_accepted.size(); ++k) totals.entries_accepted[k] += s.entries_accepted[k];
  }
  if (impl.building) {
    impl.reduce_private_matrices();
    if (impl.target_values() == nullptr) impl.symmetrise();
  }
  return totals;
}

std::vector<double>& CpuAccumulator::matrix() { return m_impl->matrix; }

}  // namespace gpede::detail
