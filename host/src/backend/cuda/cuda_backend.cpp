// The CUDA backend: the global matrix and b live on the device; record batches travel through
// pinned staging buffers and cudaMemcpyAsync on a copy stream, double-buffered so that the upload
// of batch k+1 overlaps the kernels of batch k on the compute stream; factorisation and solution
// by CudaDenseSolver (cuSOLVER) on the compute stream.
//
// Streams and events per batch slot s (two slots, used alternately):
//   host writes staging[s]      after uploaded[s] (its previous upload is done)
//   copy stream: waits consumed[s], uploads staging[s] -> device[s], records uploaded[s]
//   compute stream: waits uploaded[s], runs the kernels on device[s], records consumed[s]
// The scratch pool, the matrix and b are used by the compute stream only.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "cuda_entry_points.hpp"
#include "accumulate_launch.hpp"
#include "cuda_resources.hpp"
#include "cuda_engine.hpp"
#include "dense_launch.hpp"
#include "gpede/detail/dense_solution.hpp"
#include "gpede/detail/backend.hpp"
#include "gpede/detail/batch_classes.hpp"
#include "gpede/detail/batch_layout.hpp"
#include "gpede/detail/column_bounds.hpp"
#include "gpede/detail/worker_pool.hpp"
#include "gpede/detail/cuda_device.hpp"
#include "gpede/error.hpp"
#include "gpede/kernels/cooperative_schur.hpp"
#include "gpede/kernels/local_fit.hpp"

namespace gpede::detail {
namespace cuda {
namespace {

constexpr std::size_t kAlignment = 256;
// Left free beside the backend's own allocations (cuSOLVER/cuBLAS internals, fragmentation).
constexpr std::size_t kReserveBytes = std::size_t{256} << 20;
// Records of the group class with up to this many globals get a warp, larger ones a block.
constexpr std::int32_t kWarpClassMaxGlobals = 256;
constexpr int kWarpThreads = 32;
constexpr int kBlockThreads = 128;

std::size_t align_up(std::size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

std::string gigabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GB", bytes / 1e9);
  return text;
}

/// Byte offsets of a batch's arrays in the staging buffer and in the device buffer (same layout).
struct BatchLayout {
  std::size_t record_begin = 0, record_weight = 0, meas_value = 0, meas_sigma = 0, local_begin = 0,
              global_begin = 0, local_index = 0, local_deriv = 0, global_index = 0, global_deriv = 0,
              thread_records = 0, group_records = 0, total = 0;
};

BatchLayout layout_for(const RecordBatch& b, std::size_t thread_records, std::size_t group_records) {
  BatchLayout l;
  std::size_t at = 0;
  auto place = [&](std::size_t bytes) {
    const std::size_t offset = at;
    at = align_up(at + bytes);
    return offset;
  };
  l.record_begin = place(b.record_begin.size() * sizeof(std::int64_t));
  l.record_weight = place(b.record_weight.size() * sizeof(double));
  l.meas_value = place(b.meas_value.size() * sizeof(double));
  l.meas_sigma = place(b.meas_sigma.size() * sizeof(double));
  l.local_begin = place(b.local_begin.size() * sizeof(std::int64_t));
  l.global_begin = place(b.global_begin.size() * sizeof(std::int64_t));
  l.local_index = place(b.local_index.size() * sizeof(std::int32_t));
  l.local_deriv = place(b.local_deriv.size() * sizeof(double));
  l.global_index = place(b.global_index.size() * sizeof(std::int32_t));
  l.global_deriv = place(b.global_deriv.size() * sizeof(double));
  l.thread_records = place(thread_records * sizeof(std::int32_t));
  l.group_records = place(group_records * sizeof(std::int32_t));
  l.total = at;
  return l;
}

// Copies one array of a batch into the pinned staging buffer, large ones on several threads.
template <class T>
void stage(std::byte* base, std::size_t offset, const std::vector<T>& v, WorkerPool* pool) {
  if (!v.empty()) parallel_copy(base + offset, v.data(), v.size() * sizeof(T), pool);
}

kernels::RecordBatchView device_view(const RecordBatch& batch, const BatchLayout& l, std::byte* base) {
  kernels::RecordBatchView view;
  view.n_records = static_cast<std::int64_t>(batch.n_records());
  view.record_begin = reinterpret_cast<const std::int64_t*>(base + l.record_begin);
  view.record_weight = reinterpret_cast<const double*>(base + l.record_weight);
  view.meas_value = reinterpret_cast<const double*>(base + l.meas_value);
  view.meas_sigma = reinterpret_cast<const double*>(base + l.meas_sigma);
  view.local_begin = reinterpret_cast<const std::int64_t*>(base + l.local_begin);
  view.global_begin = reinterpret_cast<const std::int64_t*>(base + l.global_begin);
  view.local_index = reinterpret_cast<const std::int32_t*>(base + l.local_index);
  view.local_deriv = reinterpret_cast<const double*>(base + l.local_deriv);
  view.global_index = reinterpret_cast<const std::int32_t*>(base + l.global_index);
  view.global_deriv = reinterpret_cast<const double*>(base + l.global_deriv);
  return view;
}

/// The layout checks of every backend, plus the 32-bit record count of the kernels' launch grid.
void check_cuda_batch_layout(const RecordBatch& batch) {
  check_batch_layout(batch, "CUDA accumulator");
  if (batch.n_records() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    throw RuntimeError("CUDA accumulator: more than 2^31 - 1 records in one batch");
  }
}

/// The records of one launch shape and the scratch capacity they need.
struct SizeClass {
  std::vector<std::int32_t> records;
  kernels::RecordShape capacity;
  std::size_t slot_bytes = 0;
  std::int64_t slots = 0;
};

struct BatchSlot {
  PinnedBuffer<std::byte> staging;
  DeviceBuffer<std::byte> device;
  Event uploaded;  // the upload from `staging` is done: the host may write it again
  Event consumed;  // the kernels reading `device` are done: the next upload may overwrite it
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const CudaBackendOptions& options, CudaDeviceInfo device)
      : m_options(options),
        m_device(std::move(device)),
        m_compute(make_stream()),
        m_copy(make_stream()),
        m_engine(make_cuda_engine(m_compute.get())),
        m_solution(*m_engine) {
    for (BatchSlot& slot : m_slots) {
      slot.uploaded = make_event();
      slot.consumed = make_event();
    }
    m_totals.allocate(1);
    int ordinal = 0, processors = 0;
    GPEDE_CUDA_CHECK(cudaGetDevice(&ordinal));
    GPEDE_CUDA_CHECK(cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, ordinal));
    m_resident_warps = static_cast<std::int64_t>(processors) * accumulate_groups_per_multiprocessor(kWarpThreads);
    m_resident_blocks = static_cast<std::int64_t>(processors) * accumulate_groups_per_multiprocessor(kBlockThreads);
  }

  ~CudaBackend() override {
    // Pending work must end before the buffers it uses are freed; errors cannot be reported here.
    (void)cudaStreamSynchronize(m_copy.get());
    (void)cudaStreamSynchronize(m_compute.get());
  }

  std::string name() const override { return "cuda"; }

  bool wants_bounds() const override { return m_options.deterministic && !m_bounds_ready; }
  void begin_bounds(const PassSetup& setup) override {
    m_bounds.reset(setup.n_variable, setup.variable_index, setup.fit);
    m_bounds_ready = true;
  }
  void bound(const RecordBatch& batch) override { m_bounds.add(batch); }

  void begin_pass(const PassSetup& setup) override {
    if (setup.n_all < 0 || setup.n_variable < 0 ||
        static_cast<std::int64_t>(setup.parameter_value.size()) != setup.n_all ||
        static_cast<std::int64_t>(setup.variable_index.size()) != setup.n_all) {
      throw RuntimeError(
          "CUDA accumulator: pass setup sizes disagree (parameter_value and variable_index need n_all entries)");
    }
    for (const std::int32_t v : setup.variable_index) {
      if (v >= setup.n_variable) throw RuntimeError("CUDA accumulator: variable index beyond n_variable in the pass setup");
    }
    cudaStream_t s = m_compute.get();
    const std::size_t n_all = static_cast<std::size_t>(setup.n_all);
    const std::size_t n_var = static_cast<std::size_t>(setup.n_variable);
    if (setup.build_matrix) {
      m_solution.release();
      m_has_matrix = false;
      const std::size_t elements = n_var * n_var;
      if (m_matrix.size() != elements) {
        GPEDE_CUDA_CHECK(cudaStreamSynchronize(s));
        m_matrix.reset();
        require_free(elements * sizeof(double), [&] {
          return "the global matrix of " + std::to_string(setup.n_variable) + " parameters";
        });
        m_matrix.allocate(elements);
      }
      if (elements > 0) GPEDE_CUDA_CHECK(cudaMemsetAsync(m_matrix.data(), 0, m_matrix.bytes(), s));
      m_n = setup.n_variable;
      m_has_matrix = true;
    }
    grow(m_parameter_value, std::max<std::size_t>(n_all, 1));
    grow(m_variable_index, std::max<std::size_t>(n_all, 1));
    grow(m_rhs, std::max<std::size_t>(n_var, 1));
    grow(m_entries, std::max<std::size_t>(n_all, 1));
    if (n_all > 0) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(m_parameter_value.data(), setup.parameter_value.data(), n_all * sizeof(double),
                                       cudaMemcpyHostToDevice, s));
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(m_variable_index.data(), setup.variable_index.data(),
                                       n_all * sizeof(std::int32_t), cudaMemcpyHostToDevice, s));
    }
    GPEDE_CUDA_CHECK(cudaMemsetAsync(m_rhs.data(), 0, m_rhs.bytes(), s));
    GPEDE_CUDA_CHECK(cudaMemsetAsync(m_entries.data(), 0, m_entries.bytes(), s));
    DeviceTotals zero{};
    zero.first_failure = ~0ull;
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(m_totals.data(), &zero, sizeof zero, cudaMemcpyHostToDevice, s));
    if (m_options.deterministic) begin_deterministic_pass(setup);

    m_state.n_all = setup.n_all;
    m_state.n_variable = setup.n_variable;
    m_state.parameter_value = m_parameter_value.data();
    m_state.variable_index = m_variable_index.data();
    m_fit = setup.fit;
    m_n_all = setup.n_all;
    m_n_variable = setup.n_variable;
    m_building = setup.build_matrix;
    m_batch_ordinal = 0;
    m_in_pass = true;
  }

  void accumulate(const RecordBatch& batch) override {
    if (!m_in_pass) throw RuntimeError("CUDA accumulator: accumulate called outside a pass (begin_pass first)");
    try {
      enqueue_batch(batch);
    } catch (...) {
      m_in_pass = false;
      throw;
    }
  }

  PassTotals end_pass() override {
    if (!m_in_pass) throw RuntimeError("CUDA accumulator: end_pass called outside a pass");
    m_in_pass = false;
    cudaStream_t s = m_compute.get();
    DeviceTotals sums{};
    if (m_options.deterministic) {
      if (m_building) {
        launch_fixed_to_double(m_matrix.data(), m_n, m_exponent.data(), m_diagonal_low.data(), m_diagonal_high.data(), s);
      }
      launch_sum_group_vectors(m_group_rhs.data(), m_groups, m_n_variable, m_rhs.data(), s);
    } else if (m_building) {
      launch_symmetrise_lower(m_matrix.data(), m_n, s);
    }
    PassTotals totals;
    totals.rhs.assign(static_cast<std::size_t>(m_n_variable), 0.0);
    totals.entries_accepted.assign(static_cast<std::size_t>(m_n_all), 0);
    static_assert(sizeof(std::int64_t) == sizeof(unsigned long long));
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(&sums, m_totals.data(), sizeof sums, cudaMemcpyDeviceToHost, s));
    if (!totals.rhs.empty()) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(totals.rhs.data(), m_rhs.data(), totals.rhs.size() * sizeof(double),
                                       cudaMemcpyDeviceToHost, s));
    }
    if (!totals.entries_accepted.empty()) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(totals.entries_accepted.data(), m_entries.data(),
                                       totals.entries_accepted.size() * sizeof(std::int64_t), cudaMemcpyDeviceToHost, s));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(s));
    if (m_options.deterministic) add_group_totals(sums);
    if (sums.failures > 0) {
      throw RuntimeError("CUDA accumulator: the scratch of " + std::to_string(sums.failures) +
                         " records was too small (one of them: record " +
                         std::to_string(sums.first_failure & 0xffffffffull) + " of batch " +
                         std::to_string(sums.first_failure >> 32) + " of the pass); the capacities computed "
                         "on the host disagree with the per-record functions");
    }
    totals.chi2_sum = sums.chi2_sum;
    totals.function_value = sums.function_value;
    totals.ndf_sum = static_cast<std::int64_t>(sums.ndf_sum);
    totals.weighted_ndf_sum = sums.weighted_ndf_sum;
    totals.records = static_cast<std::int64_t>(sums.records);
    totals.accepted = static_cast<std::int64_t>(sums.accepted);
    totals.rejected_rank = static_cast<std::int64_t>(sums.rejected_rank);
    totals.rejected_ndf = static_cast<std::int64_t>(sums.rejected_ndf);
    totals.rejected_huge = static_cast<std::int64_t>(sums.rejected_huge);
    totals.rejected_cut = static_cast<std::int64_t>(sums.rejected_cut);
    totals.rejected_downweight = static_cast<std::int64_t>(sums.rejected_downweight);
    return totals;
  }

  void add_to_matrix(const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& cols,
                     const std::vector<double>& values) override {
    require_matrix("add_to_matrix");
    if (rows.size() != values.size() || cols.size() != values.size()) {
      throw RuntimeError("CUDA backend: add_to_matrix needs as many rows and columns as values");
    }
    for (std::size_t k = 0; k < values.size(); ++k) {
      if (rows[k] < 0 || rows[k] >= m_n || cols[k] < 0 || cols[k] >= m_n) {
        throw RuntimeError("CUDA backend: add_to_matrix element (" + std::to_string(rows[k]) + ", " +
                           std::to_string(cols[k]) + ") outside the " + std::to_string(m_n) + " x " +
                           std::to_string(m_n) + " global matrix");
      }
    }
    if (values.empty()) return;
    cudaStream_t s = m_compute.get();
    DeviceBuffer<std::int64_t> d_rows(rows.size()), d_cols(cols.size());
    DeviceBuffer<double> d_values(values.size());
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(d_rows.data(), rows.data(), rows.size() * sizeof(std::int64_t),
                                     cudaMemcpyHostToDevice, s));
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(d_cols.data(), cols.data(), cols.size() * sizeof(std::int64_t),
                                     cudaMemcpyHostToDevice, s));
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(d_values.data(), values.data(), values.size() * sizeof(double),
                                     cudaMemcpyHostToDevice, s));
    launch_add_to_matrix(m_matrix.data(), m_n, d_rows.data(), d_cols.data(), d_values.data(),
                         static_cast<std::int64_t>(values.size()), s);
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  std::vector<double> matrix_diagonal() const override {
    require_matrix("matrix_diagonal");
    std::vector<double> d(static_cast<std::size_t>(m_n));
    if (m_n > 0) {
      GPEDE_CUDA_CHECK(cudaMemcpy2DAsync(d.data(), sizeof(double), m_matrix.data(),
                                         static_cast<std::size_t>(m_n + 1) * sizeof(double), sizeof(double),
                                         static_cast<std::size_t>(m_n), cudaMemcpyDeviceToHost, m_compute.get()));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
    return d;
  }

  // Processes that share a run add up their matrices in host memory (one process per GPU): a host
  // copy of the device matrix, and the sum back onto the device where this process solves.
  double* host_matrix(std::size_t* count) override {
    *count = 0;
    if (!m_has_matrix) return nullptr;
    m_host_matrix.resize(static_cast<std::size_t>(m_n) * static_cast<std::size_t>(m_n));
    if (!m_host_matrix.empty()) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(m_host_matrix.data(), m_matrix.data(), m_host_matrix.size() * sizeof(double),
                                       cudaMemcpyDeviceToHost, m_compute.get()));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
    *count = m_host_matrix.size();
    return m_host_matrix.data();
  }
  void host_matrix_changed() override {
    require_matrix("host_matrix_changed");
    if (!m_host_matrix.empty()) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(m_matrix.data(), m_host_matrix.data(), m_host_matrix.size() * sizeof(double),
                                       cudaMemcpyHostToDevice, m_compute.get()));
      GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
    }
    m_host_matrix = std::vector<double>();
  }

  FactorReport factorize(const ConstraintSystem& constraints, const FactorOptions& options) override {
    require_matrix("factorize");
    // The batch buffers and the scratch pool regrow in the next pass; the factorisation gets the room.
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_copy.get()));
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
    m_pool.reset();
    for (BatchSlot& slot : m_slots) slot.device.reset();
    m_has_matrix = false;
    return m_solution.factorize(adopt_device_matrix(std::move(m_matrix), m_n, m_n), m_n, constraints, options);
  }

  std::vector<double> solve(const std::vector<double>& b, const std::vector<double>& residual) override {
    return m_solution.solve(b, residual);
  }
  IterativeSolveInfo last_solve_info() const override { return m_solution.last_solve_info(); }
  void release_factorization() override { m_solution.release(); }
  std::vector<double> covariance_diagonal() override { return m_solution.covariance_diagonal(); }

  // ---- hooks for tests and benchmarks --------------------------------------------------------
  std::vector<double> download_matrix() {
    require_matrix("download_global_matrix");
    std::vector<double> host(m_matrix.size());
    if (!host.empty()) {
      GPEDE_CUDA_CHECK(cudaMemcpyAsync(host.data(), m_matrix.data(), m_matrix.bytes(), cudaMemcpyDeviceToHost,
                                       m_compute.get()));
    }
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
    return host;
  }

  void fill_test(std::uint64_t seed) {
    require_matrix("fill_test_matrix");
    launch_fill_test_matrix(m_matrix.data(), m_n, seed, m_compute.get());
  }

  double time(const std::function<void()>& work) {
    Event start = make_event(true), stop = make_event(true);
    GPEDE_CUDA_CHECK(cudaEventRecord(start.get(), m_compute.get()));
    work();
    GPEDE_CUDA_CHECK(cudaEventRecord(stop.get(), m_compute.get()));
    GPEDE_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    float ms = 0.0f;
    GPEDE_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    return static_cast<double>(ms) * 1e-3;
  }

 private:
  // Deterministic mode: exponents of the columns' bounds (from the look at the records that the
  // driver gave before this building pass), the diagonal's fixed-point words, one b vector and one
  // set of sums per group, all zeroed.
  void begin_deterministic_pass(const PassSetup& setup) {
    cudaStream_t s = m_compute.get();
    const auto n = static_cast<std::size_t>(std::max<std::int64_t>(setup.n_variable, 1));
    m_groups = std::max<std::int64_t>({1, m_resident_warps, m_resident_blocks});
    if (setup.build_matrix) {
      if (!m_bounds_ready || static_cast<std::int64_t>(m_bounds.count().size()) != setup.n_variable) {
        throw RuntimeError("CUDA accumulator: deterministic mode needs the columns' bounds before a building pass "
                           "(begin_bounds and bound over the pass's records)");
      }
      const std::vector<std::int32_t> exponent = m_bounds.exponents();
      grow(m_exponent, n);
      grow(m_diagonal_low, n);
      grow(m_diagonal_high, n);
      if (!exponent.empty()) {
        GPEDE_CUDA_CHECK(cudaMemcpyAsync(m_exponent.data(), exponent.data(), exponent.size() * sizeof(std::int32_t),
                                         cudaMemcpyHostToDevice, s));
      }
      GPEDE_CUDA_CHECK(cudaMemsetAsync(m_diagonal_low.data(), 0, m_diagonal_low.bytes(), s));
      GPEDE_CUDA_CHECK(cudaMemsetAsync(m_diagonal_high.data(), 0, m_diagonal_high.bytes(), s));
      GPEDE_CUDA_CHECK(cudaStreamSynchronize(s));  // the host vector goes away
      m_bounds_ready = false;
    }
    const std::size_t vectors = static_cast<std::size_t>(m_groups) * n;
    if (m_group_rhs.size() < vectors) {
      GPEDE_CUDA_CHECK(cudaStreamSynchronize(s));
      m_group_rhs.reset();
      require_free(vectors * sizeof(double), [&] { return std::string("deterministic mode's per-group vectors b"); });
      m_group_rhs.allocate(vectors);
    }
    grow(m_group_totals, static_cast<std::size_t>(m_groups));
    GPEDE_CUDA_CHECK(cudaMemsetAsync(m_group_rhs.data(), 0, vectors * sizeof(double), s));
    GPEDE_CUDA_CHECK(cudaMemsetAsync(m_group_totals.data(), 0, m_group_totals.bytes(), s));
  }

  // Deterministic mode: the groups' sums, in group order, into the pass's (which hold only the
  // failure count of the atomics).
  void add_group_totals(DeviceTotals& sums) {
    std::vector<DeviceTotals> groups(static_cast<std::size_t>(m_groups));
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(groups.data(), m_group_totals.data(), groups.size() * sizeof(DeviceTotals),
                                     cudaMemcpyDeviceToHost, m_compute.get()));
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
    for (const DeviceTotals& g : groups) {
      sums.chi2_sum += g.chi2_sum;
      sums.function_value += g.function_value;
      sums.ndf_sum += g.ndf_sum;
      sums.weighted_ndf_sum += g.weighted_ndf_sum;
      sums.records += g.records;
      sums.accepted += g.accepted;
      sums.rejected_rank += g.rejected_rank;
      sums.rejected_ndf += g.rejected_ndf;
      sums.rejected_huge += g.rejected_huge;
      sums.rejected_cut += g.rejected_cut;
      sums.rejected_downweight += g.rejected_downweight;
    }
  }

  void require_matrix(const char* caller) const {
    if (!m_has_matrix) {
      throw RuntimeError(std::string("CUDA backend: ") + caller +
                         " needs the global matrix: call it after a pass with build_matrix and before factorize");
    }
  }

  template <class F>
  void require_free(std::size_t bytes, F&& what) const {
    std::size_t free_bytes = 0, total_bytes = 0;
    GPEDE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (bytes + kReserveBytes > free_bytes) {
      throw RuntimeError("CUDA backend: " + what() + " needs " + gigabytes(static_cast<double>(bytes)) +
                         " of device memory, but only " + gigabytes(static_cast<double>(free_bytes)) + " of " +
                         gigabytes(static_cast<double>(total_bytes)) + " are free on " + m_device.name +
                         "; use the CPU backend (--backend cpu)");
    }
  }

  // Grows a buffer used by the compute stream (its contents are lost).
  template <class T>
  void grow(DeviceBuffer<T>& buffer, std::size_t size) {
    if (size <= buffer.size()) return;
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
    buffer.allocate(size);
  }

  // Threads of the groups that fit a class's records.
  static int group_threads(const SizeClass& c, bool small) {
    return small || c.capacity.global_entries <= kWarpClassMaxGlobals ? kWarpThreads : kBlockThreads;
  }

  // Scratch slots of a class within `budget` bytes: one per group that can be resident on the
  // device at once (more would only wait), fewer if the budget is smaller; false if not even one
  // slot fits.
  bool plan_slots(SizeClass& c, std::size_t budget, bool small) const {
    if (c.records.empty()) return true;
    c.slot_bytes = align_up(std::max<std::size_t>(kernels::coop::cooperative_scratch_bytes(c.capacity), 8));
    const std::int64_t fit = static_cast<std::int64_t>(budget / c.slot_bytes);
    const std::int64_t resident =
        std::max<std::int64_t>(1, group_threads(c, small) == kWarpThreads ? m_resident_warps : m_resident_blocks);
    c.slots = std::min({static_cast<std::int64_t>(c.records.size()), fit, resident});
    if (m_options.deterministic) c.slots = std::min(c.slots, m_groups);  // one b vector per group
    return c.slots > 0;
  }

  void prepare_pool(SizeClass& by_thread, SizeClass& by_group) {
    std::size_t budget = std::max(m_options.scratch_pool_bytes, m_pool.size());
    plan_slots(by_thread, budget, true);
    plan_slots(by_group, budget, false);
    auto needed = [&] {
      return std::max(static_cast<std::size_t>(by_thread.slots) * by_thread.slot_bytes,
                      static_cast<std::size_t>(by_group.slots) * by_group.slot_bytes);
    };
    bool fits = by_thread.records.empty() || by_thread.slots > 0;
    fits = fits && (by_group.records.empty() || by_group.slots > 0);
    if (fits && needed() <= m_pool.size()) return;
    GPEDE_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
    m_pool.reset();
    std::size_t free_bytes = 0, total_bytes = 0;
    GPEDE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const std::size_t available = free_bytes > kReserveBytes ? free_bytes - kReserveBytes : 0;
    // A record larger than the configured pool still gets one slot if the device has the room.
    budget = std::min(std::max({m_options.scratch_pool_bytes, by_thread.records.empty() ? 0 : by_thread.slot_bytes,
                                by_group.records.empty() ? 0 : by_group.slot_bytes}),
                      available);
    if (!plan_slots(by_thread, budget, true) || !plan_slots(by_group, budget, false)) {
      const std::size_t largest = std::max(by_thread.records.empty() ? 0 : by_thread.slot_bytes,
                                           by_group.records.empty() ? 0 : by_group.slot_bytes);
      throw RuntimeError("CUDA accumulator: the local fit of the largest record of a batch needs " +
                         gigabytes(static_cast<double>(largest)) + " of scratch, but only " +
                         gigabytes(static_cast<double>(available)) + " of device memory are free (" +
                         std::to_string(by_group.capacity.global_entries) + " global and " +
                         std::to_string(by_group.capacity.local_parameters) +
                         " local parameters); use the CPU backend (--backend cpu)");
    }
    m_pool.allocate(needed());
  }

  void enqueue_batch(const RecordBatch& batch) {
    check_cuda_batch_layout(batch);
    if (batch.n_records() == 0) return;
    // Every record checked (a kernel cannot throw) and sorted by size, on the host's threads.
    RecordClasses classes = classify_batch(batch, m_n_all, m_options.thread_class_max_globals,
                                           m_options.max_thread_local_parameters, &m_host_pool, "CUDA accumulator");
    SizeClass by_thread, by_group;
    by_thread.records = std::move(classes.small);
    by_thread.capacity = classes.small_capacity;
    by_group.records = std::move(classes.large);
    by_group.capacity = classes.large_capacity;

    BatchSlot& slot = m_slots[m_next_slot];
    m_next_slot = 1 - m_next_slot;
    const BatchLayout layout = layout_for(batch, by_thread.records.size(), by_group.records.size());
    GPEDE_CUDA_CHECK(cudaEventSynchronize(slot.uploaded.get()));
    if (slot.staging.size() < layout.total) slot.staging.allocate(layout.total + layout.total / 4);
    std::byte* base = slot.staging.data();
    stage(base, layout.record_begin, batch.record_begin, &m_host_pool);
    stage(base, layout.record_weight, batch.record_weight, &m_host_pool);
    stage(base, layout.meas_value, batch.meas_value, &m_host_pool);
    stage(base, layout.meas_sigma, batch.meas_sigma, &m_host_pool);
    stage(base, layout.local_begin, batch.local_begin, &m_host_pool);
    stage(base, layout.global_begin, batch.global_begin, &m_host_pool);
    stage(base, layout.local_index, batch.local_index, &m_host_pool);
    stage(base, layout.local_deriv, batch.local_deriv, &m_host_pool);
    stage(base, layout.global_index, batch.global_index, &m_host_pool);
    stage(base, layout.global_deriv, batch.global_deriv, &m_host_pool);
    stage(base, layout.thread_records, by_thread.records, &m_host_pool);
    stage(base, layout.group_records, by_group.records, &m_host_pool);

    if (slot.device.size() < layout.total) {
      GPEDE_CUDA_CHECK(cudaEventSynchronize(slot.consumed.get()));
      slot.device.reset();
      const std::size_t bytes = layout.total + layout.total / 4;
      require_free(bytes, [&] { return std::string("a record batch of ") + std::to_string(layout.total) + " bytes"; });
      slot.device.allocate(bytes);
    }
    GPEDE_CUDA_CHECK(cudaStreamWaitEvent(m_copy.get(), slot.consumed.get(), 0));
    GPEDE_CUDA_CHECK(cudaMemcpyAsync(slot.device.data(), slot.staging.data(), layout.total, cudaMemcpyHostToDevice,
                                     m_copy.get()));
    GPEDE_CUDA_CHECK(cudaEventRecord(slot.uploaded.get(), m_copy.get()));
    GPEDE_CUDA_CHECK(cudaStreamWaitEvent(m_compute.get(), slot.uploaded.get(), 0));

    prepare_pool(by_thread, by_group);
    AccumulateLaunch launch;
    launch.batch = device_view(batch, layout, slot.device.data());
    launch.state = m_state;
    launch.options = m_fit;
    launch.pool = m_pool.data();
    launch.build_matrix = m_building;
    launch.matrix = m_building ? m_matrix.data() : nullptr;
    launch.n = m_n;
    launch.rhs = m_rhs.data();
    launch.entries = m_entries.data();
    launch.totals = m_totals.data();
    launch.batch_ordinal = m_batch_ordinal;
    if (m_options.deterministic) {
      launch.exponent = m_building ? m_exponent.data() : nullptr;
      launch.diagonal_low = m_diagonal_low.data();
      launch.diagonal_high = m_diagonal_high.data();
      launch.group_rhs = m_group_rhs.data();
      launch.group_totals = m_group_totals.data();
    }
    if (!by_thread.records.empty()) {
      launch.records = reinterpret_cast<const std::int32_t*>(slot.device.data() + layout.thread_records);
      launch.n_records = static_cast<std::int64_t>(by_thread.records.size());
      launch.capacity = by_thread.capacity;
      launch.slot_bytes = by_thread.slot_bytes;
      launch.slots = by_thread.slots;
      launch_accumulate_cooperative(launch, kWarpThreads, m_compute.get());
    }
    if (!by_group.records.empty()) {
      launch.records = reinterpret_cast<const std::int32_t*>(slot.device.data() + layout.group_records);
      launch.n_records = static_cast<std::int64_t>(by_group.records.size());
      launch.capacity = by_group.capacity;
      launch.slot_bytes = by_group.slot_bytes;
      launch.slots = by_group.slots;
      launch_accumulate_cooperative(launch, group_threads(by_group, false), m_compute.get());
    }
    GPEDE_CUDA_CHECK(cudaEventRecord(slot.consumed.get(), m_compute.get()));
    ++m_batch_ordinal;
  }

  CudaBackendOptions m_options;
  CudaDeviceInfo m_device;
  WorkerPool m_host_pool{std::min(usable_cpus(), 8)};  // checks, classes and staging of batches
  Stream m_compute;
  Stream m_copy;
  BatchSlot m_slots[2];
  int m_next_slot = 0;
  std::unique_ptr<linalg::Engine> m_engine;  // the dense solution's operations on m_compute
  DenseSolution m_solution;

  DeviceBuffer<double> m_matrix;  // n x n column-major; lower triangle accumulated, mirrored in end_pass
  std::vector<double> m_host_matrix;  // host_matrix's copy, while processes add theirs up
  std::int64_t m_n = 0;
  bool m_has_matrix = false;
  DeviceBuffer<double> m_parameter_value;
  DeviceBuffer<std::int32_t> m_variable_index;
  DeviceBuffer<double> m_rhs;
  DeviceBuffer<unsigned long long> m_entries;
  DeviceBuffer<DeviceTotals> m_totals;
  DeviceBuffer<std::byte> m_pool;
  std::int64_t m_resident_warps = 0;   // groups of the accumulation kernel resident at once: of 32 threads
  std::int64_t m_resident_blocks = 0;  // ... and of 128 threads
  // Deterministic mode (CudaBackendOptions::deterministic)
  ColumnBounds m_bounds;
  bool m_bounds_ready = false;
  std::int64_t m_groups = 0;  // groups with a b vector of their own: the most slots of a launch
  DeviceBuffer<std::int32_t> m_exponent;
  DeviceBuffer<unsigned long long> m_diagonal_low;
  DeviceBuffer<unsigned long long> m_diagonal_high;
  DeviceBuffer<double> m_group_rhs;
  DeviceBuffer<DeviceTotals> m_group_totals;

  kernels::GlobalStateView m_state;
  kernels::LocalFitOptions m_fit;
  std::int64_t m_n_all = 0;
  std::int64_t m_n_variable = 0;
  bool m_building = false;
  bool m_in_pass = false;
  std::uint32_t m_batch_ordinal = 0;
};

CudaBackend& as_cuda(Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda == nullptr) throw RuntimeError("backend '" + backend.name() + "' is not the CUDA backend");
  return *cuda;
}

}  // namespace
}  // namespace cuda

namespace cuda {

std::unique_ptr<Backend> make_backend(const CudaBackendOptions& options) {
  CudaDeviceInfo device = query_device();
  if (!device.present) {
    throw RuntimeError("no usable CUDA device (" + device.reason + "); use the CPU backend (--backend cpu)");
  }
  return std::make_unique<CudaBackend>(options, std::move(device));
}

std::vector<double> download_global_matrix(Backend& backend) { return as_cuda(backend).download_matrix(); }

void fill_test_matrix(Backend& backend, std::uint64_t seed) { as_cuda(backend).fill_test(seed); }

double time_on_device(Backend& backend, const std::function<void()>& work) { return as_cuda(backend).time(work); }

}  // namespace cuda
}  // namespace gpede::detail
