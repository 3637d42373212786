/* Status names and the per-thread last-error message. */
#include <stdio.h>
#include <string.h>

#include "ground.h"

/* Large enough for a kernel build log's useful head; longer messages are cut. */
#define MESSAGE_CAP 16384

static _Thread_local char last_message[MESSAGE_CAP];
/* Messages twin__fail recorded on this thread (twin__fail_count). */
static _Thread_local unsigned long failures;

const char *twin_status_name(twin_status s) {
  switch (s) {
#define TWIN_X_NAME(name, msg)                                                                     \
  case name:                                                                                       \
    return #name;
    TWIN_STATUS_TABLE(TWIN_X_NAME)
#undef TWIN_X_NAME
  }
  return "TWIN_STATUS_UNKNOWN";
}

const char *twin_status_message(twin_status s) {
  switch (s) {
#define TWIN_X_MESSAGE(name, msg)                                                                  \
  case name:                                                                                       \
    return msg;
    TWIN_STATUS_TABLE(TWIN_X_MESSAGE)
#undef TWIN_X_MESSAGE
  }
  return "unknown status";
}

const char *twin_last_error(void) {
  return last_message;
}

static void append_v(const char *fmt, va_list ap) {
  size_t used = strlen(last_message);
  if (used + 1 < MESSAGE_CAP)
    vsnprintf(last_message + used, MESSAGE_CAP - used, fmt, ap);
}

unsigned long twin__fail_count(void) {
  return failures;
}

twin_status twin__fail(twin_status s, const char *fmt, ...) {
  failures++;
  /* The message starts with the status name so a log line is useful on its own. */
  snprintf(last_message, MESSAGE_CAP, "%s: ", twin_status_name(s));
  va_list ap;
  va_start(ap, fmt);
  append_v(fmt, ap);
  va_end(ap);
  return s;
}

static void append_text(const char *text) {
  size_t used = strlen(last_message);
  snprintf(last_message + used, MESSAGE_CAP - used, "%s", text);
}

twin_status twin__fail_prefix(twin_status s, const char *fmt, ...) {
  char prefix[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  /* The cause follows its own "NAME: "; it moves behind the prefix under s's name. */
  const char *name = twin_status_name(s);
  size_t skip = 0, len = strlen(last_message);
  const char *colon = strstr(last_message, ": ");
  if (colon && (size_t)(colon - last_message) < 48)
    skip = (size_t)(colon - last_message) + 2;
  char cause[MESSAGE_CAP];
  memcpy(cause, last_message + skip, len - skip + 1);
  snprintf(last_message, MESSAGE_CAP, "%s: %s", name, prefix);
  append_text(cause);
  return s;
}

void twin__error_keep(twin_status s, twin__kept_error *out) {
  size_t n = strnlen(last_message, sizeof out->text - 1);
  out->status = s;
  memcpy(out->text, last_message, n);
  out->text[n] = '\0';
}

twin_status twin__error_restore(const twin__kept_error *kept) {
  snprintf(last_message, MESSAGE_CAP, "%s", kept->text);
  return kept->status;
}

void twin__fail_append(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  append_v(fmt, ap);
  va_end(ap);
}

void twin__snappend(char *buf, size_t cap, const char *fmt, ...) {
  size_t used = strlen(buf);
  if (used + 1 >= cap)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + used, cap - used, fmt, ap);
  va_end(ap);
}
