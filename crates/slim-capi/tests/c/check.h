/* The C tests' checks. Define TEST_NAME (the program's name, a string) before including.
 * CHECK counts each check and exits 1 at the first failure, printing the program, the
 * line, the condition, a message and the library's last error; CHECK_FAILS checks that a
 * call returns `status` with a last error containing `needle`; OK that a call succeeds. */
#ifndef SLIM_TEST_CHECK_H
#define SLIM_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slim.h"

static int checks = 0;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        checks++;                                                                 \
        if (!(cond)) {                                                            \
            fprintf(stderr, TEST_NAME ":%d: check failed: %s: ", __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, " (last error: %s)\n", slim_last_error());            \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

#define CHECK_FAILS(call, status, needle)                                          \
    do {                                                                           \
        SlimStatus got_ = (call);                                                  \
        CHECK(got_ == (status), "%s returned %d, wanted %d", #call, got_, status); \
        CHECK(strstr(slim_last_error(), (needle)) != NULL,                         \
              "the message of %s does not name \"%s\"", #call, needle);            \
    } while (0)

#define OK(call) CHECK((call) == SLIM_STATUS_OK, "%s failed", #call)

#endif
