/* thread_pool.cu: a persistent pool of host threads with one parallel_for. The workers sleep
   on a condition variable between jobs; a job names how many of them take part, and the
   caller works too, then waits for those helpers to leave the job (its body lives on the
   caller's stack). */
#include "thread_pool.cuh"

clip_thread_pool::clip_thread_pool(int workers) {
  try {
    threads_.reserve(workers > 0 ? (size_t)workers : 0);
  } catch (...) {
    return;
  }
  for (int t = 0; t < workers; t++) {
    try {
      threads_.emplace_back(&clip_thread_pool::work, this, t);
    } catch (...) { /* std::system_error: run on the threads that started */
      break;
    }
  }
}

clip_thread_pool::~clip_thread_pool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  wake_.notify_all();
  for (std::thread &t : threads_) t.join();
}

void clip_thread_pool::run(int count, int helpers, body_fn body, const void *fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    body_ = body;
    fn_ = fn;
    count_ = count;
    next_.store(0, std::memory_order_relaxed);
    helpers_ = helpers;
    busy_ = helpers;
    job_++;
  }
  wake_.notify_all();
  for (int i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < count;) body(fn, i);
  /* The helpers' writes happen before their last unlock of mu_, so they are visible here. */
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [this] { return busy_ == 0; });
}

/* A helper of job k cannot miss it: job k+1 starts only after every helper of job k left it.
   A worker that sleeps through jobs it has no part in just skips them. */
void clip_thread_pool::work(int index) {
  unsigned long seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return quit_ || job_ != seen; });
    if (quit_) return;
    seen = job_;
    if (index >= helpers_) continue;
    const body_fn body = body_;
    const void *fn = fn_;
    const int count = count_;
    lock.unlock();
    for (int i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < count;) body(fn, i);
    lock.lock();
    if (--busy_ == 0) done_.notify_one();
  }
}
