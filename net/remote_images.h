/* remote_images.h - images drawn by an AUTOMATIC1111-compatible server (A1111's WebUI with
 * --api, Forge, SD.Next, `mixel serve -d`): POST /sdapi/v1/txt2img, or img2img with the source
 * as base64, while GET /sdapi/v1/progress is polled for the progress bar; the PNG that comes
 * back is checked, saved with its "parameters" chunk (the server's, else its infotext added) and
 * handled like a local one. Cancel stops the request and asks the server to stop
 * (POST /sdapi/v1/interrupt). The transport is the remote engines' (net/remote_http.h): timeouts,
 * retries on connection errors only, the server's error text, the key as a Bearer header.
 */
#ifndef MX_REMOTE_IMAGES_H
#define MX_REMOTE_IMAGES_H

#include <stdbool.h>

#include "app/image_job.h"
#include "net/remote.h"

/* Where progress goes and how cancel is asked; every member may be NULL. progress is called
 * from a polling thread (text as mx_image_progress_text writes it: "image 3/20 · ETA 12 s"). */
struct mx_remote_image_io {
    void (*progress)(void *ud, const char *text, double done, double total);
    bool (*canceled)(void *ud);
    void *ud;
};

/* Draws req on the server at o->url (e.g. "http://gpu-box:7860"; a trailing "/sdapi/v1" is
 * taken off): txt2img, or img2img from req->init_path with req->strength. Unset settings get
 * mixel's defaults (512x512 or the source's size, 20 steps, cfg 7, "Euler a"), so a local and a
 * remote image of the same request match where the server is faithful. The PNG goes to out_path
 * (NULL: a new <ms>-<seed>.png in req->out_dir, created 0700). Returns 0 with *res, or
 * MX_ECANCELED, a transport or HTTP error (the server's message), MX_EFORMAT (an answer without
 * a PNG, or one that does not decode), or the file's error. */
int mx_remote_image_generate(const struct mx_remote_opts *o, const struct mx_image_req *req,
                             const char *out_path, const struct mx_remote_image_io *io,
                             struct mx_image_result *res, struct mx_err *err);

/* The chat's image engine on that server (app/image_job.h), o's strings copied. Returns it (free
 * with r->free) or NULL with err set (a URL that is not http(s)://, out of memory). Nothing is
 * asked of the server until the first image. */
struct mx_image_remote *mx_remote_images_new(const struct mx_remote_opts *o, struct mx_err *err);

#endif
