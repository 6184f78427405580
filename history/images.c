/* images.c - listing a session's images from the history database (see images.h). */
#include "history/images.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

int mx_db_image_list(struct mx_db *db, int64_t session, struct mx_db_image_list *out,
                     struct mx_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3 *h = mx_db_sqlite(db);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(h,
                                "SELECT id, IFNULL(message, 0), path, params, created FROM images "
                                "WHERE session = ?1 ORDER BY created, id",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return mx_err_set(err, MX_EDB, "history: listing images: %s", sqlite3_errmsg(h));
    sqlite3_bind_int64(st, 1, session);
    size_t cap = 0;
    int ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct mx_db_image *v = realloc(out->v, nc * sizeof *v);
            if (!v) {
                ret = mx_err_set(err, MX_ENOMEM, "history: listing images: out of memory");
                break;
            }
            out->v = v;
            cap = nc;
        }
        struct mx_db_image *im = &out->v[out->n];
        im->id = sqlite3_column_int64(st, 0);
        im->message = sqlite3_column_int64(st, 1);
        const char *p = (const char *)sqlite3_column_text(st, 2);
        const char *q = (const char *)sqlite3_column_text(st, 3);
        im->path = strdup(p ? p : "");
        im->params = strdup(q ? q : "{}");
        im->created_ms = sqlite3_column_int64(st, 4);
        if (!im->path || !im->params) {
            free(im->path);
            free(im->params);
            ret = mx_err_set(err, MX_ENOMEM, "history: listing images: out of memory");
            break;
        }
        out->n++;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = mx_err_set(err, MX_EDB, "history: listing images: %s", sqlite3_errmsg(h));
    sqlite3_finalize(st);
    if (ret != 0)
        mx_db_image_list_free(out);
    return ret;
}

void mx_db_image_list_free(struct mx_db_image_list *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].params);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}
