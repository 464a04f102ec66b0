// CUDA kernels of torch.ops.temporal_roi_align.* (defined in most_similar.cpp, which documents
// them): compiled only where nvcc and a GPU exist (compiled_ops.py). One warp per cell or row:
// each lane keeps a running top-k of its columns (lane, lane + 32, ...), then the warp merges the
// 32 lists in k rounds; among equal values the lowest column wins, as in the CPU kernels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

namespace temporal_roi_align {
namespace {

using at::Tensor;

constexpr int kWarp = 32;
constexpr int kThreads = 256;
// The largest k of the warp kernels; a larger k takes ATen's embedding_bag and topk.
constexpr int kMaxK = 64;

template <typename scalar_t, int K>
struct LaneTopK {
  scalar_t values[K];
  int64_t indices[K];
  int count = 0;

  // Columns arrive in increasing order: a value equal to the k-th does not enter.
  __device__ void push(scalar_t value, int64_t index, int k) {
    if (count == k && !(value > values[k - 1])) return;
    int pos = count < k ? count++ : k - 1;
    while (pos > 0 && values[pos - 1] < value) {
      values[pos] = values[pos - 1];
      indices[pos] = indices[pos - 1];
      --pos;
    }
    values[pos] = value;
    indices[pos] = index;
  }

  // The warp's k largest (value, index) pairs, largest first, lowest index first among equals;
  // lane 0 writes them (values times scale).
  __device__ void merge(int k, int lane, scalar_t scale, scalar_t* out_values, int64_t* out_indices) {
    int head = 0;
    for (int r = 0; r < k; ++r) {
      scalar_t value = head < count ? values[head] : -std::numeric_limits<scalar_t>::infinity();
      int64_t index = head < count ? indices[head] : std::numeric_limits<int64_t>::max();
      for (int offset = kWarp / 2; offset > 0; offset /= 2) {
        const scalar_t other_value = __shfl_xor_sync(0xffffffff, value, offset);
        const int64_t other_index = __shfl_xor_sync(0xffffffff, index, offset);
        if (other_value > value || (other_value == value && other_index < index)) {
          value = other_value;
          index = other_index;
        }
      }
      if (lane == 0) {
        out_values[r] = value * scale;
        out_indices[r] = index;
      }
      if (head < count && indices[head] == index) ++head;
    }
  }
};

template <typename scalar_t, int K>
__global__ void gram_top_k_kernel(const scalar_t* __restrict__ gram, int64_t columns, int64_t row_stride,
                                  const int64_t* __restrict__ locations, const scalar_t* __restrict__ weights,
                                  const int64_t* __restrict__ offsets, const scalar_t* __restrict__ cell_norms,
                                  int64_t num_cells, int k, scalar_t* scores, int64_t* indices) {
  const int64_t cell = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (cell >= num_cells) return;  // whole warps leave together
  const int64_t first = offsets[cell], last = offsets[cell + 1];
  LaneTopK<scalar_t, K> top;
  for (int64_t c = lane; c < columns; c += kWarp) {
    scalar_t sum = 0;
    for (int64_t j = first; j < last; ++j) sum += weights[j] * gram[locations[j] * row_stride + c];
    top.push(sum, c, k);
  }
  top.merge(k, lane, scalar_t(1) / cell_norms[cell], scores + cell * k, indices + cell * k);
}

template <typename scalar_t, int K>
__global__ void rows_top_k_kernel(const scalar_t* __restrict__ rows, int64_t columns, int64_t row_stride,
                                  int64_t num_rows, int k, scalar_t* scores, int64_t* indices) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= num_rows) return;
  LaneTopK<scalar_t, K> top;
  for (int64_t c = lane; c < columns; c += kWarp) top.push(rows[row * row_stride + c], c, k);
  top.merge(k, lane, scalar_t(1), scores + row * k, indices + row * k);
}

int64_t num_blocks(int64_t warps) { return (warps * kWarp + kThreads - 1) / kThreads; }

template <typename scalar_t, int K>
void launch_gram_top_k(const Tensor& gram, const Tensor& locations, const Tensor& weights, const Tensor& offsets,
                       const Tensor& cell_norms, int64_t k, Tensor& scores, Tensor& indices) {
  const int64_t num_cells = offsets.numel() - 1;
  gram_top_k_kernel<scalar_t, K><<<num_blocks(num_cells), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      gram.data_ptr<scalar_t>(), gram.size(1), gram.stride(0), locations.data_ptr<int64_t>(),
      weights.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), cell_norms.data_ptr<scalar_t>(), num_cells,
      static_cast<int>(k), scores.data_ptr<scalar_t>(), indices.data_ptr<int64_t>());
}

template <typename scalar_t, int K>
void launch_rows_top_k(const Tensor& rows, int64_t k, Tensor& scores, Tensor& indices) {
  rows_top_k_kernel<scalar_t, K><<<num_blocks(rows.size(0)), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      rows.data_ptr<scalar_t>(), rows.size(1), rows.stride(0), rows.size(0), static_cast<int>(k),
      scores.data_ptr<scalar_t>(), indices.data_ptr<int64_t>());
}

// The kernels with the smallest list size K in {4, 8, 16, 32, 64} that holds k.
template <typename scalar_t>
void launch_gram_top_k_for(const Tensor& gram, const Tensor& locations, const Tensor& weights, const Tensor& offsets,
                           const Tensor& cell_norms, int64_t k, Tensor& scores, Tensor& indices) {
  if (k <= 4) {
    launch_gram_top_k<scalar_t, 4>(gram, locations, weights, offsets, cell_norms, k, scores, indices);
  } else if (k <= 8) {
    launch_gram_top_k<scalar_t, 8>(gram, locations, weights, offsets, cell_norms, k, scores, indices);
  } else if (k <= 16) {
    launch_gram_top_k<scalar_t, 16>(gram, locations, weights, offsets, cell_norms, k, scores, indices);
  } else if (k <= 32) {
    launch_gram_top_k<scalar_t, 32>(gram, locations, weights, offsets, cell_norms, k, scores, indices);
  } else {
    launch_gram_top_k<scalar_t, kMaxK>(gram, locations, weights, offsets, cell_norms, k, scores, indices);
  }
}

template <typename scalar_t>
void launch_rows_top_k_for(const Tensor& rows, int64_t k, Tensor& scores, Tensor& indices) {
  if (k <= 4) {
    launch_rows_top_k<scalar_t, 4>(rows, k, scores, indices);
  } else if (k <= 8) {
    launch_rows_top_k<scalar_t, 8>(rows, k, scores, indices);
  } else if (k <= 16) {
    launch_rows_top_k<scalar_t, 16>(rows, k, scores, indices);
  } else if (k <= 32) {
    launch_rows_top_k<scalar_t, 32>(rows, k, scores, indices);
  } else {
    launch_rows_top_k<scalar_t, kMaxK>(rows, k, scores, indices);
  }
}

std::tuple<Tensor, Tensor> gram_top_k_cuda(const Tensor& gram, const Tensor& locations, const Tensor& weights,
                                           const Tensor& offsets, const Tensor& cell_norms, int64_t k) {
  TORCH_CHECK(gram.dim() == 2 && gram.stride(1) == 1, "gram must be [L, P] with contiguous rows");
  TORCH_CHECK(locations.scalar_type() == at::kLong && offsets.scalar_type() == at::kLong,
              "locations and offsets must be int64");
  TORCH_CHECK(weights.scalar_type() == gram.scalar_type() && cell_norms.scalar_type() == gram.scalar_type(),
              "weights and cell_norms must have gram's dtype");
  TORCH_CHECK(offsets.dim() == 1 && offsets.numel() >= 1, "offsets must be [cells + 1]");
  for (const Tensor* t : {&locations, &weights, &offsets, &cell_norms}) {
    TORCH_CHECK(t->device() == gram.device(), "all tensors must be on gram's device");
  }
  const int64_t num_cells = offsets.numel() - 1, columns = gram.size(1);
  TORCH_CHECK(k >= 1 && k <= columns, "k=", k, " must be in [1, ", columns, "] (the columns)");
  TORCH_CHECK(cell_norms.numel() == num_cells, "cell_norms must have one norm per cell");
  if (locations.numel() > 0) {
    TORCH_CHECK(locations.min().item<int64_t>() >= 0 && locations.max().item<int64_t>() < gram.size(0),
                "locations must be rows of gram");
  }
  const c10::cuda::CUDAGuard guard(gram.device());
  auto locations_c = locations.contiguous(), weights_c = weights.contiguous();
  auto offsets_c = offsets.contiguous(), norms_c = cell_norms.contiguous();
  if (k > kMaxK) {
    auto dots = std::get<0>(at::embedding_bag(gram, locations_c, offsets_c, false, 0, false, weights_c, true));
    auto top = dots.topk(k, 1);
    return {std::get<0>(top) / norms_c.unsqueeze(1), std::get<1>(top)};
  }
  auto scores = at::empty({num_cells, k}, gram.options());
  auto indices = at::empty({num_cells, k}, gram.options().dtype(at::kLong));
  if (num_cells == 0) return {scores, indices};
  AT_DISPATCH_FLOATING_TYPES(gram.scalar_type(), "gram_top_k_cuda", [&] {
    launch_gram_top_k_for<scalar_t>(gram, locations_c, weights_c, offsets_c, norms_c, k, scores, indices);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {scores, indices};
}

std::tuple<Tensor, Tensor> rows_top_k_cuda(const Tensor& rows, int64_t k) {
  TORCH_CHECK(rows.dim() == 2 && rows.stride(1) == 1, "rows must be [n, P] with contiguous rows");
  const int64_t num_rows = rows.size(0), columns = rows.size(1);
  TORCH_CHECK(k >= 1 && k <= columns, "k=", k, " must be in [1, ", columns, "] (the columns)");
  const c10::cuda::CUDAGuard guard(rows.device());
  if (k > kMaxK) {
    auto top = rows.topk(k, 1);
    return {std::get<0>(top), std::get<1>(top)};
  }
  auto scores = at::empty({num_rows, k}, rows.options());
  auto indices = at::empty({num_rows, k}, rows.options().dtype(at::kLong));
  if (num_rows == 0) return {scores, indices};
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "rows_top_k_cuda", [&] { launch_rows_top_k_for<scalar_t>(rows, k, scores, indices); });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {scores, indices};
}

}  // namespace

TORCH_LIBRARY_IMPL(temporal_roi_align, CUDA, m) {
  m.impl("gram_top_k", &gram_top_k_cuda);
  m.impl("rows_top_k", &rows_top_k_cuda);
}

}  // namespace temporal_roi_align
