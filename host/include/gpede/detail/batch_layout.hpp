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

/// Throws RuntimeError("<who>: inconsistent record batch: ...") where the array sizes of the batch
/// disagree with its offsets.
void check_batch_layout(const RecordBatch& batch, const std::string& who);

}  // namespace gpede::detail
