// Most Similar RoI Align's memory-bound steps as compiled CPU kernels (OpenMP through
// at::parallel_for), registered as torch.ops.temporal_roi_align.*; the CUDA kernels of the same
// ops are in most_similar_cuda.cu. temporal_roi_align/layers/compiled_ops.py builds and loads
// them and documents each op; most_similar_roi_align.py falls back to PyTorch without them.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

namespace temporal_roi_align {
namespace {

using at::Tensor;

// The k largest values pushed so far with their indices, largest first; among equal values the
// one pushed first ranks first (pushed in index order: the lowest indices win ties).
template <typename scalar_t>
class RunningTopK {
 public:
  RunningTopK(int64_t k) : k_(k), values_(k), indices_(k) {}

  void clear() { count_ = 0; }

  // Values at or below this one cannot enter (everything can while fewer than k are held).
  scalar_t threshold() const {
    return count_ < k_ ? -std::numeric_limits<scalar_t>::infinity() : values_[k_ - 1];
  }
  bool full() const { return count_ == k_; }

  void push(scalar_t value, int64_t index) {
    if (count_ == k_ && !(value > values_[k_ - 1])) return;
    int64_t pos = count_ < k_ ? count_++ : k_ - 1;
    while (pos > 0 && values_[pos - 1] < value) {
      values_[pos] = values_[pos - 1];
      indices_[pos] = indices_[pos - 1];
      --pos;
    }
    values_[pos] = value;
    indices_[pos] = index;
  }

  // Pushes block[0:n] (indices first + 0 .. first + n - 1), skipping it at once when its
  // maximum cannot enter.
  void push_block(const scalar_t* block, int64_t n, int64_t first) {
    if (full()) {
      scalar_t block_max = block[0];
#pragma omp simd reduction(max : block_max)
      for (int64_t c = 0; c < n; ++c) block_max = std::max(block_max, block[c]);
      if (!(block_max > values_[k_ - 1])) return;
    }
    for (int64_t c = 0; c < n; ++c) push(block[c], first + c);
  }

  // Writes the k values (each times scale) and indices.
  void write(scalar_t* values, int64_t* indices, scalar_t scale) const {
    for (int64_t j = 0; j < k_; ++j) {
      values[j] = values_[j] * scale;
      indices[j] = indices_[j];
    }
  }

 private:
  int64_t k_;
  int64_t count_ = 0;
  std::vector<scalar_t> values_;
  std::vector<int64_t> indices_;
};

// Eight vectors of 32 bytes (GCC/Clang vector extensions: AVX2 registers where compiled for
// AVX2, pairs of SSE registers otherwise) hold one block of columns while it is summed.
template <typename scalar_t>
struct Block {
  typedef scalar_t Vec __attribute__((vector_size(32)));
  static constexpr int64_t kLanes = 32 / sizeof(scalar_t);
  static constexpr int64_t kVecs = 8;
  static constexpr int64_t kSize = kLanes * kVecs;
};

void check_top_k(const Tensor& rows, int64_t k, int64_t columns) {
  TORCH_CHECK(k >= 1 && k <= columns, "k=", k, " must be in [1, ", columns, "] (the columns)");
  TORCH_CHECK(rows.is_floating_point(), "expected a floating point tensor, got ", rows.scalar_type());
}

template <typename scalar_t>
void gram_top_k_kernel(const Tensor& gram, const Tensor& locations, const Tensor& weights, const Tensor& offsets,
                       const Tensor& cell_norms, int64_t k, Tensor& scores, Tensor& indices) {
  using Vec = typename Block<scalar_t>::Vec;
  constexpr int64_t L = Block<scalar_t>::kLanes, V = Block<scalar_t>::kVecs, B = Block<scalar_t>::kSize;
  const int64_t num_cells = offsets.numel() - 1, columns = gram.size(1), row_stride = gram.stride(0);
  const scalar_t* gram_p = gram.data_ptr<scalar_t>();
  const int64_t* loc_p = locations.data_ptr<int64_t>();
  const scalar_t* w_p = weights.data_ptr<scalar_t>();
  const int64_t* off_p = offsets.data_ptr<int64_t>();
  const scalar_t* norm_p = cell_norms.data_ptr<scalar_t>();
  scalar_t* score_p = scores.data_ptr<scalar_t>();
  int64_t* index_p = indices.data_ptr<int64_t>();
  at::parallel_for(0, num_cells, 16, [&](int64_t begin, int64_t end) {
    RunningTopK<scalar_t> top(k);
    alignas(64) scalar_t sums[B];
    for (int64_t cell = begin; cell < end; ++cell) {
      top.clear();
      const int64_t first = off_p[cell], last = off_p[cell + 1];
      int64_t c0 = 0;
      for (; c0 + B <= columns; c0 += B) {  // whole blocks: the sums stay in registers
        Vec acc[V] = {};
        for (int64_t j = first; j < last; ++j) {
          const scalar_t* row = gram_p + loc_p[j] * row_stride + c0;
          const scalar_t w = w_p[j];
          for (int64_t v = 0; v < V; ++v) {
            Vec x;
            std::memcpy(&x, row + v * L, sizeof(Vec));
            acc[v] += w * x;
          }
        }
        if (top.full()) {  // skip the block when its largest sum cannot enter
          Vec largest = acc[0];
          for (int64_t v = 1; v < V; ++v) largest = largest > acc[v] ? largest : acc[v];
          scalar_t block_max = largest[0];
          for (int64_t l = 1; l < L; ++l) block_max = std::max(block_max, static_cast<scalar_t>(largest[l]));
          if (!(block_max > top.threshold())) continue;
        }
        std::memcpy(sums, acc, sizeof(acc));
        for (int64_t c = 0; c < B; ++c) top.push(sums[c], c0 + c);
      }
      if (c0 < columns) {  // the last, partial block
        const int64_t n = columns - c0;
        for (int64_t c = 0; c < n; ++c) sums[c] = 0;
        for (int64_t j = first; j < last; ++j) {
          const scalar_t* row = gram_p + loc_p[j] * row_stride + c0;
          const scalar_t w = w_p[j];
          for (int64_t c = 0; c < n; ++c) sums[c] += w * row[c];
        }
        for (int64_t c = 0; c < n; ++c) top.push(sums[c], c0 + c);
      }
      top.write(score_p + cell * k, index_p + cell * k, scalar_t(1) / norm_p[cell]);
    }
  });
}

template <typename scalar_t>
void rows_top_k_kernel(const Tensor& rows, int64_t k, Tensor& scores, Tensor& indices) {
  constexpr int64_t B = Block<scalar_t>::kSize;
  const int64_t num_rows = rows.size(0), columns = rows.size(1), row_stride = rows.stride(0);
  const scalar_t* rows_p = rows.data_ptr<scalar_t>();
  scalar_t* score_p = scores.data_ptr<scalar_t>();
  int64_t* index_p = indices.data_ptr<int64_t>();
  at::parallel_for(0, num_rows, 16, [&](int64_t begin, int64_t end) {
    RunningTopK<scalar_t> top(k);
    for (int64_t i = begin; i < end; ++i) {
      top.clear();
      const scalar_t* row = rows_p + i * row_stride;
      for (int64_t c0 = 0; c0 < columns; c0 += B) top.push_block(row + c0, std::min(B, columns - c0), c0);
      top.write(score_p + i * k, index_p + i * k, scalar_t(1));
    }
  });
}

// Top k of the dot products of each cell with the columns of gram, each dot product being
// sum_j weights[j] * gram[locations[j], :] over the cell's entries j in [offsets[i], offsets[i + 1]),
// computed one block of columns at a time and never stored; scores are the top values / cell_norms.
std::tuple<Tensor, Tensor> gram_top_k_cpu(
    const Tensor& gram, const Tensor& locations, const Tensor& weights, const Tensor& offsets,
    const Tensor& cell_norms, int64_t k) {
  TORCH_CHECK(gram.dim() == 2 && gram.stride(1) == 1, "gram must be [L, P] with contiguous rows");
  TORCH_CHECK(locations.scalar_type() == at::kLong && offsets.scalar_type() == at::kLong,
              "locations and offsets must be int64");
  TORCH_CHECK(weights.scalar_type() == gram.scalar_type() && cell_norms.scalar_type() == gram.scalar_type(),
              "weights and cell_norms must have gram's dtype");
  TORCH_CHECK(offsets.dim() == 1 && offsets.numel() >= 1, "offsets must be [cells + 1]");
  TORCH_CHECK(locations.numel() == weights.numel(), "locations and weights must have one entry each");
  for (const Tensor* t : {&locations, &weights, &offsets, &cell_norms}) {
    TORCH_CHECK(t->device() == gram.device(), "all tensors must be on gram's device");
  }
  const int64_t num_cells = offsets.numel() - 1;
  const int64_t columns = gram.size(1);
  check_top_k(gram, k, columns);
  TORCH_CHECK(cell_norms.numel() == num_cells, "cell_norms must have one norm per cell");
  auto locations_c = locations.contiguous();
  auto weights_c = weights.contiguous();
  auto offsets_c = offsets.contiguous();
  auto norms_c = cell_norms.contiguous();
  const int64_t* check_off = offsets_c.data_ptr<int64_t>();
  const int64_t* check_loc = locations_c.data_ptr<int64_t>();
  TORCH_CHECK((check_off[0] >= 0 && check_off[num_cells] <= locations.numel()),
              "offsets must index locations");
  for (int64_t i = 0; i < num_cells; ++i) TORCH_CHECK(check_off[i] <= check_off[i + 1], "offsets must not decrease");
  for (int64_t j = check_off[0]; j < check_off[num_cells]; ++j) {
    TORCH_CHECK(check_loc[j] >= 0 && check_loc[j] < gram.size(0), "location ", check_loc[j], " is not a row of gram");
  }
  auto scores = at::empty({num_cells, k}, gram.options());
  auto indices = at::empty({num_cells, k}, gram.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(gram.scalar_type(), "gram_top_k", [&] {
    gram_top_k_kernel<scalar_t>(gram, locations_c, weights_c, offsets_c, norms_c, k, scores, indices);
  });
  return {scores, indices};
}

// Top k of each row of rows ([n, P], contiguous within a row), largest first.
std::tuple<Tensor, Tensor> rows_top_k_cpu(const Tensor& rows, int64_t k) {
  TORCH_CHECK(rows.dim() == 2 && rows.stride(1) == 1, "rows must be [n, P] with contiguous rows");
  const int64_t num_rows = rows.size(0), columns = rows.size(1);
  check_top_k(rows, k, columns);
  auto scores = at::empty({num_rows, k}, rows.options());
  auto indices = at::empty({num_rows, k}, rows.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "rows_top_k", [&] { rows_top_k_kernel<scalar_t>(rows, k, scores, indices); });
  return {scores, indices};
}

bool compiled_with_cuda() {
#ifdef TRA_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

TORCH_LIBRARY(temporal_roi_align, m) {
  m.def(
      "gram_top_k(Tensor gram, Tensor locations, Tensor weights, Tensor offsets, Tensor cell_norms, int k)"
      " -> (Tensor, Tensor)");
  m.def("rows_top_k(Tensor rows, int k) -> (Tensor, Tensor)");
  m.def("compiled_with_cuda", &compiled_with_cuda);
}

TORCH_LIBRARY_IMPL(temporal_roi_align, CPU, m) {
  m.impl("gram_top_k", &gram_top_k_cpu);
  m.impl("rows_top_k", &rows_top_k_cpu);
}

}  // namespace temporal_roi_align
