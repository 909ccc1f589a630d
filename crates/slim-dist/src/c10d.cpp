// The C side of slim-dist: a c10d process group (a TCPStore rendezvous and the Gloo
// backend, or with USE_C10D_NCCL the NCCL one, all from libtorch) behind a few extern "C"
// calls on tch's tensors
// (`at::Tensor*`). Every call catches what c10d throws and hands its message back as a
// malloc'd string (freed by slim_dist_free_error); nothing here aborts the process.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  // Nanoseconds spent waiting for collectives since the last slim_dist_take_busy_ns.
  std::atomic<int64_t> busy_ns{0};
};

// Waits for `work`, adding the time since `start` to the group's busy time.
void finish(Group* g, const c10::intrusive_ptr<c10d::Work>& work,
            std::chrono::steady_clock::time_point start) {
  work->wait();
  auto spent = std::chrono::steady_clock::now() - start;
  g->busy_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(spent).count();
}

char* copy(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

// Runs `f`, turning an exception into an error string (null on success).
template <typename F>
char* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy(e.what());
  } catch (...) {
    return copy("unknown C++ exception");
  }
}

void all_reduce_sum(Group* g, at::Tensor& t) {
  auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> ts{t};
  finish(g, g->backend->allreduce(ts), start);
}

// The sum over the ranks, differentiable: each rank's gradient is the sum of every rank's
// gradient of the result (what SyncBatchNorm's backward does with its statistics).
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            int64_t group) {
    ctx->saved_data["group"] = group;
    at::Tensor out = x.detach().contiguous().clone();
    all_reduce_sum(reinterpret_cast<Group*>(group), out);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto g = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    at::Tensor out = grads[0].contiguous().clone();
    all_reduce_sum(g, out);
    return {out, at::Tensor()};
  }
};

}  // namespace

extern "C" {

void slim_dist_free_error(char* e) { std::free(e); }

// Joins the group of `world` ranks whose rank 0 serves the store at addr:port, through
// Gloo (`nccl` 0) or NCCL (1; CUDA tensors only). `ifname` (may be null or empty) picks
// the network interface Gloo uses, else the hostname's.
char* slim_dist_new(const char* addr, int port, int rank, int world, long timeout_ms,
                    const char* ifname, int nccl, void** out) {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = world;
    o.timeout = timeout;
    auto group = new Group();
    try {
      group->store = c10::make_intrusive<c10d::TCPStore>(addr, o);
      if (nccl) {
#ifdef USE_C10D_NCCL
        auto nopts = c10d::ProcessGroupNCCL::Options::create();
        nopts->timeout = timeout;
        group->backend =
            c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, rank, world, nopts);
        *out = group;
        return;
#else
        throw std::runtime_error("this build has no NCCL backend (build with the cuda feature)");
#endif
      }
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      if (ifname != nullptr && ifname[0] != '\0') {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      group->backend =
          c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, rank, world, opts);
    } catch (...) {
      delete group;
      throw;
    }
    *out = group;
  });
}

void slim_dist_drop(void* g) { delete static_cast<Group*>(g); }

// Sums `t` (contiguous) over the ranks, in place.
char* slim_dist_all_reduce_sum(void* g, at::Tensor* t) {
  return guarded([&] { all_reduce_sum(static_cast<Group*>(g), *t); });
}

// The sum of `t` over the ranks as a new tensor in `out`, through which the gradient
// flows: each rank's gradient of `t` is the sum of every rank's gradient of the result.
// Every rank must run the backward pass too (it all-reduces).
char* slim_dist_all_reduce_sum_grad(void* g, at::Tensor* t, at::Tensor** out) {
  return guarded([&] {
    *out = new at::Tensor(AllReduceSum::apply(*t, reinterpret_cast<int64_t>(g)));
  });
}

// Every rank's `t` (same shape on each), in rank order, into `out[0..world]` as new
// tensors (the caller owns them).
char* slim_dist_all_gather(void* g, at::Tensor* t, int world, at::Tensor** out) {
  return guarded([&] {
    auto start = std::chrono::steady_clock::now();
    auto group = static_cast<Group*>(g);
    std::vector<at::Tensor> in{t->contiguous()};
    std::vector<std::vector<at::Tensor>> gathered(1);
    for (int r = 0; r < world; ++r) gathered[0].push_back(at::empty_like(in[0]));
    finish(group, group->backend->allgather(gathered, in), start);
    for (int r = 0; r < world; ++r) out[r] = new at::Tensor(gathered[0][r]);
  });
}

// Rank `root`'s `t` into every rank's `t` (contiguous), in place.
char* slim_dist_broadcast(void* g, at::Tensor* t, int root) {
  return guarded([&] {
    auto start = std::chrono::steady_clock::now();
    auto group = static_cast<Group*>(g);
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    finish(group, group->backend->broadcast(ts, o), start);
  });
}

int64_t slim_dist_take_busy_ns(void* g) { return static_cast<Group*>(g)->busy_ns.exchange(0); }

char* slim_dist_barrier(void* g) {
  return guarded([&] { static_cast<Group*>(g)->backend->barrier()->wait(); });
}

}  // extern "C"
