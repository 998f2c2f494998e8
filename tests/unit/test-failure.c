/* Failure, the neutral error below garden: recording, context on the way up,
 * NULL-safety, truncation. */
#include <errno.h>
#include <string.h>

#include "../../src/garden/garden-internal.h"
#include "cloche/failure.h"
#include "tap.h"

/* garden's mapping: what the wire shows for each kind of failure below it. */
static void test_mapping(void)
{
    Failure f = {0};
    ApiError e;
    api_error_clear(&e);
    failure_set(&f, -EBADMSG, FAILURE_REMOTE, "Registry 'r' sent a bad manifest");
    is_int(garden_failure(&e, &f, -EBADMSG), -EBADMSG, "map: returns r");
    ok(e.status == 502 && strcmp(e.type, GARDEN_ERR_GENERIC) == 0 &&
           strcmp(e.message, "Registry 'r' sent a bad manifest") == 0,
       "map: a remote party's fault is a 502 with the message");
    failure_input(&f, -ENOENT, "Unknown user 'x'");
    garden_failure(&e, &f, -ENOENT);
    is_int(e.status, 400, "map: input is a 400 in general, whatever its errno");
    garden_image_failure(&e, &f, -ENOENT);
    is_int(e.status, 404, "map: the image store's -ENOENT input is a 404");
    failure_input(&f, -EBUSY, "Image 'x' is used by 1 container");
    garden_image_failure(&e, &f, -EBUSY);
    is_int(e.status, 409, "map: the image store's -EBUSY input is a 409");
    failure_input(&f, -ESTALE, "The container's image is not 'sha256:...'");
    garden_image_failure(&e, &f, -ESTALE);
    is_int(e.status, 409, "map: -ESTALE is a 409");
    failure_input(&f, -EINVAL, "Image reference 'x' has two tags");
    garden_image_failure(&e, &f, -EINVAL);
    ok(e.status == 400 && strcmp(e.message, "Image reference 'x' has two tags") == 0,
       "map: other input is a 400");
    failure_errno(&f, -ENOENT, "Failed to open layer 'x'");
    garden_image_failure(&e, &f, -ENOENT);
    is_int(e.status, 500, "map: a system -ENOENT stays a 500");
    failure_set(&f, -ETIMEDOUT, FAILURE_REMOTE, "Registry 'r' stalled");
    garden_image_failure(&e, &f, -ETIMEDOUT);
    is_int(e.status, 502, "map: the image store's remote failures are 502");
    failure_clear(&f);
    api_error_clear(&e);
    garden_image_failure(&e, &f, -ENOMEM);
    is_int(e.status, 0, "map: nothing recorded leaves the reply to the caller");
}

int main(void)
{
    test_mapping();
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
