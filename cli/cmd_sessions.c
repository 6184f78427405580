/* cmd_sessions.c - `mixel sessions list|show|export|rm|search`: the saved conversations from the
 * command line, for people (list, show, search) and scripts (export as JSON or Markdown).
 *
 * Titles and message text are untrusted (model output, pasted prompts): when they go to a
 * terminal, control characters, ESC, C1 controls, invalid UTF-8 and bidi overrides are shown
 * inert (^[ , \x9b, \u202e) so a stored answer can never move the cursor, retitle the window or
 * hide text. `export` writes the raw text: it is data for a file or another program.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "history/db.h"
#include "history/kvsnap.h"
#include "cli/cmd.h"
#include "cli/opts.h"

struct opts {
    const char *db;      /* --db PATH, or NULL for $XDG_DATA_HOME/mixel/history.db */
    const char *format;  /* export: "md" or "json" */
    bool escape;         /* show control characters inert (default: when stdout is a tty) */
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel sessions [list]\n"
            "       mixel sessions show ID\n"
            "       mixel sessions export ID [--format md|json]\n"
            "       mixel sessions rm ID...\n"
            "       mixel sessions search TEXT...\n"
            "\n"
            "ID is a session's number or its exact title. show and export follow the active\n"
            "branch (the one a resumed chat continues); search finds messages containing all\n"
            "the words, in every branch.\n"
            "\n"
            "options:\n"
            "  --db PATH        the history database (default $XDG_DATA_HOME/mixel/history.db)\n"
            "  --format FMT     export as md (default) or json\n"
            "  --escape         show control characters inert even when not on a terminal\n"
            "  -h, --help       this help\n");
}

/* Writes s with everything a terminal could act on made visible; one_line folds line breaks
 * and tabs into spaces (list and search rows). */
static void put_safe(FILE *f, const char *s, bool escape, bool one_line) {
    if (!escape) {
        for (; *s; s++)
            fputc(one_line && (*s == '\n' || *s == '\r' || *s == '\t') ? ' ' : *s, f);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        if (c == '\n' || c == '\t') {
            fputc(one_line ? ' ' : (int)c, f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "^%c", c ^ 0x40); /* ESC -> ^[ */
            p++;
        } else if (c < 0x80) {
            fputc((int)c, f);
            p++;
        } else {
            /* decode one UTF-8 sequence; anything malformed is shown byte by byte */
            size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                       : (c & 0xf8) == 0xf0 ? 4 : 0;
            uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
            bool ok = len > 0;
            for (size_t k = 1; ok && k < len; k++) {
                ok = (p[k] & 0xc0) == 0x80; /* also stops at the NUL */
                cp = cp << 6 | (p[k] & 0x3f);
            }
            if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                       (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                       (cp >= 0xd800 && cp <= 0xdfff)))
                ok = false;
            if (!ok) {
                fprintf(f, "\\x%02x", c);
                p++;
                continue;
            }
            /* C1 controls (0x9b is CSI to some terminals) and bidi overrides/isolates */
            if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
                (cp >= 0x2066 && cp <= 0x2069))
                fprintf(f, cp < 0x100 ? "\\x%02x" : "\\u%04x", (unsigned)cp);
            else
                fwrite(p, 1, len, f);
            p += len;
        }
    }
}

static void put_time(FILE *f, int64_t ms) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    if (localtime_r(&t, &tm) && strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm))
        fputs(buf, f);
    else
        fputs("?", f);
}

/* Opens the database, or leaves *db NULL when there is no database file yet (none of these
 * commands has anything to do then, so none creates one). Returns 0 or prints and returns the
 * exit status 1. */
static int open_db(const struct opts *o, struct mx_db **db) {
    struct mx_err err = {0};
    char path[4096];
    if (o->db) {
        snprintf(path, sizeof path, "%s", o->db);
    } else if (mx_db_default_path(path, sizeof path, &err) < 0) {
        mx_cli_err("sessions", "%s", err.msg);
        return 1;
    }
    if (access(path, F_OK) != 0) {
        *db = NULL;
        return 0;
    }
    struct mx_db_opts dbo = {.path = path};
    int rc = mx_db_open(db, &dbo, &err);
    if (rc < 0) {
        mx_cli_err("sessions", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    return 0;
}

static int find(struct mx_db *db, const char *key, int64_t *id) {
    struct mx_err err = {0};
    int rc = db ? mx_db_session_find(db, key, id, &err) : MX_ENOENT;
    if (rc < 0) {
        mx_cli_err("sessions", "%s",
                db ? mx_err_msg(&err, rc) : "no sessions saved yet");
        return 1;
    }
    return 0;
}

static int do_list(struct mx_db *db, const struct opts *o) {
    if (!db) {
        printf("no sessions saved yet\n");
        return 0;
    }
    struct mx_session_list l;
    struct mx_err err = {0};
    int rc = mx_db_session_list(db, 0, &l, &err);
    if (rc < 0) {
        mx_cli_err("sessions", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    if (l.n == 0)
        printf("no sessions saved yet\n");
    else
        printf("%6s  %-16s  %5s  %s\n", "ID", "UPDATED", "MSGS", "TITLE");
    for (size_t i = 0; i < l.n; i++) {
        const struct mx_session *s = &l.v[i];
        printf("%6lld  ", (long long)s->id);
        put_time(stdout, s->updated_ms);
        printf("  %5lld  ", (long long)s->n_messages);
        fputs(mx_safe(s->title[0] ? s->title : "(untitled)"), stdout); /* never raw: a name */
        putchar('\n');
    }
    mx_session_list_free(&l);
    return 0;
}

static int do_show(struct mx_db *db, const struct opts *o, const char *key) {
    int64_t id;
    if (find(db, key, &id))
        return 1;
    struct mx_session s;
    struct mx_msg_list path;
    struct mx_err err = {0};
    int rc = mx_db_session_get(db, id, &s, &err);
    if (rc == 0 && (rc = mx_db_active_path(db, id, &path, &err)) < 0)
        mx_session_deinit(&s);
    if (rc < 0) {
        mx_cli_err("sessions", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    printf("session %lld: ", (long long)s.id);
    /* names are made inert always (cli/opts.h mx_safe, the TUI's sanitiser); messages are the
     * session's data: raw into a pipe, inert on a terminal or with --escape */
    fputs(mx_safe(s.title[0] ? s.title : "(untitled)"), stdout);
    printf("\nmodel:   %s", mx_safe(s.model_path[0] ? s.model_path : "(unknown)"));
    if (s.template_name[0])
        printf("\ntemplate: %s", mx_safe(s.template_name));
    printf("\ncreated: ");
    put_time(stdout, s.created_ms);
    printf(", updated: ");
    put_time(stdout, s.updated_ms);
    printf(", %lld messages in all branches\n", (long long)s.n_messages);
    for (size_t i = 0; i < path.n; i++) {
        const struct mx_msg *m = &path.v[i];
        printf("\n--- %s", mx_role_name(m->role));
        if (m->sibling_count > 1)
            printf(" (%d/%d)", m->sibling_index, m->sibling_count);
        if (m->state == MX_MSG_PARTIAL)
            printf(" [stopped]");
        else if (m->state == MX_MSG_STREAMING)
            printf(" [interrupted]");
        printf(" #%lld ---\n", (long long)m->id);
        put_safe(stdout, m->content, o->escape, false);
        putchar('\n');
    }
    mx_msg_list_free(&path);
    mx_session_deinit(&s);
    return 0;
}

static int do_export(struct mx_db *db, const struct opts *o, const char *key) {
    bool json = !strcmp(o->format, "json");
    if (!json && strcmp(o->format, "md") != 0) {
        mx_cli_err("sessions", "--format must be md or json, not '%s'", o->format);
        return 2;
    }
    int64_t id;
    if (find(db, key, &id))
        return 1;
    char *out = NULL;
    struct mx_err err = {0};
    int rc = json ? mx_db_export_json(db, id, &out, &err) : mx_db_export_md(db, id, &out, &err);
    if (rc < 0) {
        mx_cli_err("sessions", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    fputs(out, stdout);
    if (json)
        putchar('\n');
    free(out);
    return 0;
}

/* The snapshot file of session id: beside --db when given, else in $XDG_DATA_HOME. */
static void snapshot_path(const struct opts *o, int64_t id, char *buf, size_t size) {
    buf[0] = '\0';
    if (o->db) {
        const char *slash = strrchr(o->db, '/');
        int dl = slash ? (int)(slash - o->db) : 1;
        snprintf(buf, size, "%.*s/kv/%lld.kv", dl, slash ? o->db : ".", (long long)id);
    } else {
        mx_kvsnap_path(buf, size, id, NULL);
    }
}

static int do_rm(struct mx_db *db, const struct opts *o, int n, char **keys) {
    if (!db) {
        mx_cli_err("sessions", "no sessions saved yet");
        return 1;
    }
    if (mx_db_readonly(db)) {
        mx_cli_err("sessions", "cannot remove: history is read-only (%s)",
                mx_db_readonly_reason(db));
        return 1;
    }
    int status = 0;
    for (int i = 0; i < n; i++) {
        int64_t id;
        if (find(db, keys[i], &id)) {
            status = 1;
            continue;
        }
        struct mx_err err = {0};
        int rc = mx_db_session_delete(db, id, &err);
        if (rc < 0) {
            mx_cli_err("sessions", "%s", mx_err_msg(&err, rc));
            status = 1;
            continue;
        }
        char kv[4200];
        snapshot_path(o, id, kv, sizeof kv);
        if (kv[0] && unlink(kv) != 0 && errno != ENOENT)
            mx_cli_err("sessions", "%s: %s", kv, strerror(errno));
        printf("removed session %lld\n", (long long)id);
    }
    return status;
}

static int do_search(struct mx_db *db, const struct opts *o, int n, char **words) {
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(words[i]) + 1;
    char *text = calloc(1, len);
    if (!text)
        return 1;
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(text, " ");
        strcat(text, words[i]);
    }
    if (!db) {
        free(text);
        printf("no sessions saved yet\n");
        return 1;
    }
    struct mx_db_hit_list h;
    struct mx_err err = {0};
    int rc = mx_db_search(db, text, 100, &h, &err);
    free(text);
    if (rc < 0) {
        mx_cli_err("sessions", "%s", mx_err_msg(&err, rc));
        return rc == MX_EINVAL ? 2 : 1;
    }
    for (size_t i = 0; i < h.n; i++) {
        printf("session %lld  message %lld  ", (long long)h.v[i].session,
               (long long)h.v[i].message);
        put_safe(stdout, h.v[i].snippet, o->escape, true);
        putchar('\n');
    }
    if (h.n == 0)
        printf("no matches\n");
    int found = h.n > 0;
    mx_db_hit_list_free(&h);
    return found ? 0 : 1; /* like grep: 1 when nothing matched */
}

int mx_cmd_sessions(int argc, char **argv) {
    struct opts o = {.format = "md", .escape = isatty(STDOUT_FILENO)};
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"format", required_argument, NULL, 'f'},
        {"escape", no_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': o.db = optarg; break;
        case 'f': o.format = optarg; break;
        case 'e': o.escape = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    /* options may also follow the subcommand and its arguments */
    int nargs = 0;
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args)
        return 1;
    while (optind < argc) {
        args[nargs++] = argv[optind++];
        while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
            switch (c) {
            case 'd': o.db = optarg; break;
            case 'f': o.format = optarg; break;
            case 'e': o.escape = true; break;
            case 'h': usage(stdout); free(args); return 0;
            default: usage(stderr); free(args); return 2;
            }
        }
    }
    const char *sub = nargs ? args[0] : "list";
    int need = !strcmp(sub, "list") ? 0 : !strcmp(sub, "search") || !strcmp(sub, "rm") ? -1 : 1;
    bool known = !strcmp(sub, "list") || !strcmp(sub, "show") || !strcmp(sub, "export") ||
                 !strcmp(sub, "rm") || !strcmp(sub, "search");
    int have = nargs ? nargs - 1 : 0;
    if (!known || (need >= 0 && have != need) || (need < 0 && have < 1)) {
        if (!known)
            mx_cli_err("sessions", "unknown subcommand '%s'", sub);
        usage(stderr);
        free(args);
        return 2;
    }
    struct mx_db *db = NULL;
    int status = open_db(&o, &db);
    if (status == 0) {
        if (!strcmp(sub, "list"))
            status = do_list(db, &o);
        else if (!strcmp(sub, "show"))
            status = do_show(db, &o, args[1]);
        else if (!strcmp(sub, "export"))
            status = do_export(db, &o, args[1]);
        else if (!strcmp(sub, "rm"))
            status = do_rm(db, &o, have, args + 1);
        else
            status = do_search(db, &o, have, args + 1);
    }
    mx_db_close(db);
    free(args);
    return status;
}
