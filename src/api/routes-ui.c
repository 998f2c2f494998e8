/* GET /ui/: the dashboard, one self-contained page (src/api/ui/index.html, embedded
 * at build time) that uses only the public API from the browser. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"

extern const char api_ui_page[];
extern const size_t api_ui_page_len;

int route_ui(ApiRequest *req)
{
    char *page = malloc(api_ui_page_len + 1);
    if (!page)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    memcpy(page, api_ui_page, api_ui_page_len);
    page[api_ui_page_len] = '\0';
    req->raw_reply = page;
    req->raw_len = api_ui_page_len;
    req->reply_type = "text/html; charset=utf-8";
    return 0;
}

int route_ui_redirect(ApiRequest *req)
{
    req->raw_reply = strdup("");
    if (!req->raw_reply)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    req->raw_len = 0;
    req->status = 301;
    req->reply_type = "text/plain; charset=utf-8";
    req->location = "/ui/";
    return 0;
}
