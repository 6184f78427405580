/* imagegen.h - image generation in the chat: /image and /img2img on the engine worker, its
 * progress in the status bar, the result in the conversation and the gallery (imagegen.c). */
#ifndef MX_TUI_IMAGEGEN_H
#define MX_TUI_IMAGEGEN_H

#include "tui/app_int.h"

/* /image PROMPT [options]: starts an image job (notice when it cannot). */
void mx_app_cmd_image(struct app *a, const char *arg);
/* /img2img PROMPT [options]: the same from the conversation's last image. */
void mx_app_cmd_img2img(struct app *a, const char *arg);
/* Starts the image req asks for (taken over: freed here in every case), as /image does: the
 * checkpoint req->ckpt names (resolved) or the session's default, a fresh seed unless set, the
 * images folder, the device. for_tool: a generate_image call made it (a->imgen.for_tool: gen.c
 * hands a->imgen.result, what to tell the model, to mx_app_tools_image_done at its end). Returns 0 when the job started, -1 after a notice saying why
 * not. */
int mx_app_image_request(struct app *a, const char *cmd, struct mx_image_req *req,
                         bool for_tool);
/* A progress event of the running image job (text as image_job.h formats it). */
void mx_app_image_progress(struct app *a, const char *text);
/* The image job ended with code (msg: why it failed): the image into the conversation, the
 * session and the gallery, or a notice saying why not; a->imgen.result says it in a sentence
 * for the model. */
void mx_app_image_done(struct app *a, int code, const char *msg);
/* A message is to be answered and no model is loaded: when the chat model was unloaded to make
 * room for images, frees the image model and loads the chat model again, answering once it is
 * there (true); false otherwise. */
bool mx_app_image_unpark(struct app *a);
/* Frees the image engine and what the last job left. At exit, after the worker is joined. */
void mx_app_image_deinit(struct app *a);

#endif
