/* thread_pool.cuh: the CUDA backend's host worker threads (image plans, packing into pinned
   staging, pageable -> pinned copies), started once with the engine and stopped with it, so
   a call starts no thread. Pure host code. */
#ifndef CLIP_CUDA_THREAD_POOL_CUH
#define CLIP_CUDA_THREAD_POOL_CUH

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

class clip_thread_pool {
public:
  /* Starts up to `workers` threads; fewer when the system refuses one (never throws):
     parallel_for then runs on the threads that did start, and on its caller. */
  explicit clip_thread_pool(int workers);
  ~clip_thread_pool(); /* wakes and joins every worker */
  clip_thread_pool(const clip_thread_pool &) = delete;
  clip_thread_pool &operator=(const clip_thread_pool &) = delete;

  int workers() const { return (int)threads_.size(); }

  /* Runs fn(i) for every i in [0, count), on up to `threads` threads (the caller's included,
     so threads - 1 workers), taking indices from a shared counter; returns when every index
     is done. Nothing is skipped, whatever number of workers started. fn must not throw. One
     caller at a time (the engine is used by one thread at a time). */
  template <typename F> void parallel_for(int count, int threads, const F &fn) {
    if (threads > count) threads = count;
    if (threads > workers() + 1) threads = workers() + 1;
    if (threads <= 1) {
      for (int i = 0; i < count; i++) fn(i);
      return;
    }
    run(count, threads - 1, &call<F>, &fn);
  }

private:
  typedef void (*body_fn)(const void *fn, int i);
  template <typename F> static void call(const void *fn, int i) { (*(const F *)fn)(i); }
  void run(int count, int helpers, body_fn body, const void *fn);
  void work(int index);

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable wake_; /* a new job, or quit */
  std::condition_variable done_; /* the last helper left the job */
  bool quit_ = false;
  unsigned long job_ = 0; /* bumped for every job */
  /* the current job; read by the helpers after they took mu_ */
  body_fn body_ = nullptr;
  const void *fn_ = nullptr;
  int count_ = 0;
  int helpers_ = 0; /* workers 0 .. helpers_-1 take part */
  int busy_ = 0;    /* helpers still in the job */
  std::atomic<int> next_{0};
};

#endif /* CLIP_CUDA_THREAD_POOL_CUH */
