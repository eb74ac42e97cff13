// Checks and views of a RecordBatch shared by the accumulators of every backend.
#pragma once

#include <cstdint>
#include <string>

#include "gpede/kernels/record_view.hpp"
#include "gpede/record_batch.hpp"

namespace gpede::detail {

/// Raw-pointer view of the batch's host arrays.
kernels::RecordBatchView host_view(const RecordBatch& batch);

/// "record N of binary file #F" (or "record r of the batch" for records without a number).
std::string record_name(const RecordBatch& batch, std::int64_t r);

/// Which array the global offsets of a batch index: the label indices (a batch for a backend) or
/// the labels only (a batch as a record source hands it over, global_index not yet filled).
enum class GlobalArray { index, label };

/// Throws RuntimeError("<who>: inconsistent record batch: ...") where the array sizes of the batch
/// disagree with its offsets.
void check_batch_layout(const RecordBatch& batch, const std::string& who, GlobalArray globals = GlobalArray::index);

/// The first problem of record r's offsets and local indices ("has decreasing offsets", "has local
/// index 0 below 1"), or an empty text. The batch's layout must be valid.
std::string record_offsets_problem(const RecordBatch& batch, std::int64_t r);

/// record_offsets_problem, then label indices outside [0, n_all) ("has a global derivative with
/// label index ... outside the label map (label ...)").
std::string record_problem(const RecordBatch& batch, std::int64_t r, std::int64_t n_all);

}  // namespace gpede::detail
