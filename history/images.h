/* images.h - reading back the images recorded in a session (mx_db_image_add in db.h writes
 * them): the TUI shows each under the message it belongs to and in the gallery. */
#ifndef MX_IMAGES_H
#define MX_IMAGES_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "history/db.h"

struct mx_db_image {
    int64_t id;
    int64_t message;   /* the message it is attached to, 0 = none */
    char *path;        /* as recorded (untrusted for display) */
    char *params;      /* JSON object text */
    int64_t created_ms;
};

struct mx_db_image_list {
    struct mx_db_image *v;
    size_t n;
};

/* All images of a session, oldest first. The caller frees out with mx_db_image_list_free.
 * Errors: MX_EDB, MX_ENOMEM (out is then empty). */
int mx_db_image_list(struct mx_db *db, int64_t session, struct mx_db_image_list *out,
                     struct mx_err *err);
void mx_db_image_list_free(struct mx_db_image_list *l); /* NULL ok */

#endif
