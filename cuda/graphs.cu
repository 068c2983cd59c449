/* graphs.cu: CUDA graphs of the forward, one per batch size. Every buffer is fixed at create,
   so the forward for a batch size n is the same launch sequence every time. The first
   forward for n runs eagerly (it also makes the GEMM plans and loads the kernels' modules),
   then the same sequence is captured on the compute stream and instantiated; later forwards
   for n replay it. Failures to capture or instantiate only turn graphs off for this engine
   (the reason is kept for clip_cuda_debug_graphs). CLIP_CUDA_GRAPHS=0 at create disables
   them; CLIP_CUDA_PROFILE=1 does too (its per-op events cannot live inside a graph). */
#include <stdio.h>
#include <string.h>

#include "backend.cuh"
#include "graphs.cuh"

void clip_graphs_clear(cuda_state *st) {
  for (int i = 0; i < GRAPH_CACHE; i++) {
    if (st->graph[i].exec) cudaGraphExecDestroy(st->graph[i].exec);
    st->graph[i].exec = NULL;
    st->graph[i].n = 0;
  }
}

/* Graphs stay off for this engine from now on; the reason is kept, the error is cleared. */
static void graphs_give_up(clip_engine *e, cuda_state *st, const char *what, cudaError_t err,
                           const char *detail) {
  cudaGetLastError();
  st->graphs_failed = 1;
  snprintf(st->graph_note, sizeof st->graph_note, "%s failed: %s%s%s", what,
           err != cudaSuccess ? cudaGetErrorName(err) : "", detail && detail[0] ? ": " : "",
           detail ? detail : "");
  (void)e;
}

static cudaError_t graph_instantiate(cudaGraphExec_t *exec, cudaGraph_t graph) {
#if CUDART_VERSION >= 12000
  return cudaGraphInstantiate(exec, graph, 0ULL);
#else
  return cudaGraphInstantiate(exec, graph, NULL, NULL, 0);
#endif
}

/* Captures forward(n) into a graph and caches its exec. Nothing in clip_cuda_forward_ops allocates,
   synchronizes or copies (the GEMM plans for n exist: the eager forward just made them), and
   the capture is thread-local so other threads' CUDA calls are not affected. Any failure only
   turns graphs off. */
static void graph_capture(clip_engine *e, cuda_state *st, int n) {
  cudaError_t err = cudaStreamBeginCapture(st->compute, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    graphs_give_up(e, st, "cudaStreamBeginCapture", err, NULL);
    return;
  }
  char saved[CLIP_ERR_LEN];
  memcpy(saved, e->last_error, sizeof saved);
  const clip_status s = clip_cuda_forward_ops(e, st, n, CLIP_STAGE_ALL);
  cudaGraph_t graph = NULL;
  err = cudaStreamEndCapture(st->compute, &graph); /* always ends the capture */
  if (s != CLIP_OK || err != cudaSuccess || !graph) {
    char detail[CLIP_ERR_LEN];
    snprintf(detail, sizeof detail, "%s", s != CLIP_OK ? e->last_error : "");
    memcpy(e->last_error, saved, sizeof saved);
    if (graph) cudaGraphDestroy(graph);
    graphs_give_up(e, st, "capture", err, detail);
    return;
  }
  cudaGraphExec_t exec = NULL;
  err = graph_instantiate(&exec, graph);
  cudaGraphDestroy(graph);
  if (err != cudaSuccess || !exec) {
    graphs_give_up(e, st, "cudaGraphInstantiate", err, NULL);
    return;
  }
  int slot = -1;
  for (int i = 0; i < GRAPH_CACHE && slot < 0; i++)
    if (!st->graph[i].n) slot = i;
  if (slot < 0) { /* full: replace the least recently used */
    slot = 0;
    for (int i = 1; i < GRAPH_CACHE; i++)
      if (st->graph[i].stamp < st->graph[slot].stamp) slot = i;
  }
  /* An exec still running is freed by the driver when it completes. */
  if (st->graph[slot].exec) cudaGraphExecDestroy(st->graph[slot].exec);
  st->graph[slot].n = n;
  st->graph[slot].exec = exec;
  st->graph[slot].stamp = ++st->graph_clock;
  st->graph_captures++;
}

/* The whole forward for n: a cached graph's replay, or direct launches (then a capture for
   next time when graphs are on). */
clip_status clip_cuda_forward(clip_engine *e, cuda_state *st, int n) {
  if (!st->graphs_on || st->graphs_failed) return clip_cuda_forward_ops(e, st, n, CLIP_STAGE_ALL);
  for (int i = 0; i < GRAPH_CACHE; i++) {
    graph_entry *gr = &st->graph[i];
    if (gr->n != n || !gr->exec) continue;
    const cudaError_t err = cudaGraphLaunch(gr->exec, st->compute);
    if (err == cudaSuccess) {
      gr->stamp = ++st->graph_clock;
      st->graph_launches++;
      return CLIP_OK;
    }
    /* Not expected; direct launches still work unless the context is broken, in which case
       they report the error. */
    graphs_give_up(e, st, "cudaGraphLaunch", err, NULL);
    clip_graphs_clear(st);
    return clip_cuda_forward_ops(e, st, n, CLIP_STAGE_ALL);
  }
  ST_TRY(clip_cuda_forward_ops(e, st, n, CLIP_STAGE_ALL));
  graph_capture(e, st, n);
  return CLIP_OK;
}
