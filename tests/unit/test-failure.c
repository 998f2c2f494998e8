/* Failure, the neutral error below garden: recording, context on the way up,
 * NULL-safety, truncation. */
#include <errno.h>
#include <string.h>

#include "cloche/failure.h"
#include "tap.h"

int main(void)
{
    Failure f = {0};
    ok(!failure_is_set(&f), "a zeroed Failure holds nothing");
    is_int(failure_input(&f, -EINVAL, "Invalid user '%s'", "a b"), -EINVAL, "input returns r");
    ok(failure_is_set(&f), "then it holds one");
    is_int(f.cause, FAILURE_INPUT, "cause: input");
    is_str(f.message, "Invalid user 'a b'", "message as given");

    is_int(failure_errno(&f, -ENOENT, "Failed to open '%s'", "x"), -ENOENT, "errno returns r");
    is_int(f.cause, FAILURE_SYSTEM, "cause: system");
    is_str(f.message, "Failed to open 'x': No such file or directory", "strerror appended");

    is_int(failure_wrap(&f, "Container '%s'", "h"), -ENOENT, "wrap returns the recorded error");
    is_str(f.message, "Container 'h': Failed to open 'x': No such file or directory",
           "context prepended");

    is_int(failure_set(&f, -ENOEXEC, FAILURE_EXECUTABLE, "exec: %s", "/bin/x"), -ENOEXEC,
           "set returns r");
    is_int(f.cause, FAILURE_EXECUTABLE, "cause: executable");

    failure_clear(&f);
    ok(!failure_is_set(&f) && f.message[0] == '\0', "clear empties it");
    is_int(failure_wrap(&f, "context"), -EIO, "wrapping nothing is an I/O error, never success");

    is_int(failure_errno(NULL, -EPERM, "x"), -EPERM, "NULL: errno only returns r");
    is_int(failure_input(NULL, -EINVAL, "x"), -EINVAL, "NULL: input only returns r");

    char big[FAILURE_MESSAGE_MAX * 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    failure_errno(&f, -EIO, "%s", big);
    ok(strlen(f.message) < FAILURE_MESSAGE_MAX && strstr(f.message, ": Input/output error"),
       "a long description is cut, the errno text kept");
    failure_wrap(&f, "%s", big);
    ok(strlen(f.message) == FAILURE_MESSAGE_MAX - 1, "a long context is cut to the buffer");
    return tap_done();
}
