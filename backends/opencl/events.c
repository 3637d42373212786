/* The commands on each buffer: every command twin queues on a buffer's cl_mem without waiting
 * reports its event, and the buffer's track keeps the latest one (retained), so that releasing
 * the buffer waits for its own commands, never for the whole queue. On the in-order queue, the
 * latest command on a buffer completes after every earlier one, so one event per buffer is
 * enough. The enqueue and the recording happen under one lock per context: two threads
 * enqueueing on one buffer cannot leave the older event recorded. */
#include <sched.h>
#include <time.h>

#include "clapi.h"

void twin__cl_enqueue_begin(twin__cl_context *cl) {
  pthread_mutex_lock(&cl->enqueue_lock);
}

void twin__cl_record(twin__track *track, cl_event ev) {
  twin__cl.clRetainEvent(ev);
  if (track->last)
    twin__cl.clReleaseEvent((cl_event)track->last);
  track->last = ev;
}

cl_int twin__cl_enqueue_end(twin__cl_context *cl, cl_int err, cl_event ev,
                            twin__track *const *tracks, int n) {
  if (err == CL_SUCCESS) {
    for (int i = 0; i < n; i++)
      if (tracks[i])
        twin__cl_record(tracks[i], ev);
    twin__cl.clReleaseEvent(ev);
  }
  pthread_mutex_unlock(&cl->enqueue_lock);
  return err;
}

void twin__cl_wait_last(twin__cl_context *cl, twin__track *track) {
  pthread_mutex_lock(&cl->enqueue_lock);
  cl_event last = track->last;
  track->last = NULL;
  pthread_mutex_unlock(&cl->enqueue_lock);
  if (!last)
    return;
  /* A failed command is complete too: its error is not the release's to report. */
  twin__cl.clWaitForEvents(1, &last);
  twin__cl.clReleaseEvent(last);
}

twin_status twin__cl_mark(twin_context *ctx, twin__track *track) {
  twin__cl_context *cl = to_cl(ctx);
  cl_event ev;
  twin__cl_enqueue_begin(cl);
  cl_int err = twin__cl.clEnqueueMarkerWithWaitList(cl->queue, 0, NULL, &ev);
  twin__track *tracks[] = {track};
  if (twin__cl_enqueue_end(cl, err, ev, tracks, 1) == CL_SUCCESS)
    return TWIN_OK;
  /* Without a marker the release could not know when the application's commands are done:
   * wait for them now. */
  twin_status s = twin__cl_fail("clEnqueueMarkerWithWaitList", err);
  err = twin__cl.clFinish(cl->queue);
  return err == CL_SUCCESS ? s : twin__cl_fail("clFinish", err);
}

bool twin__cl_busy(twin_context *ctx, twin__track *track) {
  twin__cl_context *cl = to_cl(ctx);
  cl_int status = CL_COMPLETE;
  pthread_mutex_lock(&cl->enqueue_lock);
  if (track->last)
    twin__cl.clGetEventInfo((cl_event)track->last, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status,
                            &status, NULL);
  pthread_mutex_unlock(&cl->enqueue_lock);
  return status > CL_COMPLETE; /* queued, submitted or running; a negative status failed */
}

static double elapsed_ms(const struct timespec *start) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - start->tv_sec) * 1e3 + (double)(t.tv_nsec - start->tv_nsec) / 1e6;
}

double twin__cl_poll_limit_ms = 500;

bool twin__cl_poll(bool (*done)(void *arg), void *arg, double limit_ms) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (unsigned i = 0; !done(arg); i++) {
    if (i < 64) {
      sched_yield(); /* the usual case: the runtime's thread is a few microseconds away */
      continue;
    }
    if (elapsed_ms(&start) > limit_ms)
      return done(arg);
    nanosleep(&(struct timespec){0, 20000}, NULL);
  }
  return true;
}

/* Each command's event holds the queue, and PoCL 3.1 drops its own reference on an event
 * only after it has finished with the command (after waking the command's waiters, then
 * dropping its references on the command's buffers and kernel). Counts above ours that last
 * are objects the application holds (a cl_mem it used on the queue keeps its last event),
 * which keep the OpenCL context alive anyway, so the wait is bounded. */
static bool queue_idle(void *arg) {
  cl_uint refs = 0;
  cl_int err = twin__cl.clGetCommandQueueInfo((cl_command_queue)arg, CL_QUEUE_REFERENCE_COUNT,
                                              sizeof refs, &refs, NULL);
  return err != CL_SUCCESS || refs <= 1;
}

void twin__cl_settle(twin__cl_context *cl) {
  twin__cl.clFinish(cl->queue);
  twin__cl_poll(queue_idle, cl->queue, twin__cl_poll_limit_ms / 5);
}
