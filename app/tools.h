/* tools.h - the tools a chat model may call: the registry (two built-ins and the user's own from
 * the config), the check of a call's arguments against the tool's declared parameters, and the
 * runners for the tools that run here (read_file, user commands). generate_image is described
 * here but drawn by the front end through the image job path (app/image_job.h), so it lands in
 * the image panel like /image; mx_tool_image_req turns its arguments into that request.
 *
 * Security model (README "Tools"): every call is shown to the user and waits for y / n /
 * always-this-session (the front end's part; --yes approves all, only as an explicit flag);
 * a user command runs with fork/execve (never a shell: the arguments are JSON on its stdin, so
 * `;`, `$()` or quotes in them are inert data), with stdout and stderr bounded in size and time
 * (killed with its process group on timeout); a call with an argument the tool does not declare,
 * a missing required one, or one of the wrong type is refused before anything runs; read_file
 * reads only regular text files inside the allowed folders (tools.allow_dirs, --allow-dir),
 * checked after realpath so no symlink or ".." leads out.
 *
 * Config keys (app/config.h): "tools": [{"name", "description", "parameters" (a JSON schema
 * object), "command": ["/abs/prog", "arg", ...], "timeout_s" (default 10, at most 600),
 * "max_output" (bytes, default 65536, at most 16 MiB)}]; "tools.allow_dirs": ["/folder", ...].
 *
 * Threading: a registry is read-only after mx_tools_new; runners may run on the worker thread
 * while the UI thread reads the registry.
 */
#ifndef MX_TOOLS_H
#define MX_TOOLS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/base/err.h"
#include "core/text/template.h"
#include "core/text/tool_call.h" /* struct mx_tool_calls: an answer's calls */

struct mx_config;
struct mx_image_req;

/* Longest file read_file returns to the model (bytes): a model's context, not a file copier. */
#define MX_TOOL_READ_MAX ((size_t)64 << 10)
/* Default and largest output kept from a user command (bytes). */
#define MX_TOOL_OUTPUT_DEFAULT ((size_t)64 << 10)
#define MX_TOOL_OUTPUT_MAX ((size_t)16 << 20)
/* Default and longest run time of a user command (seconds). */
#define MX_TOOL_TIMEOUT_DEFAULT 10.0
#define MX_TOOL_TIMEOUT_MAX 600.0
/* Bytes of a failing command's stderr reported to the model (its end: where errors are). */
#define MX_TOOL_STDERR_TAIL 1024

enum mx_tool_kind {
    MX_TOOL_READ_FILE,      /* built-in: a text file inside an allowed folder */
    MX_TOOL_GENERATE_IMAGE, /* built-in: drawn by the front end's image job */
    MX_TOOL_COMMAND,        /* the user's: a program run without a shell */
};

/* One tool. Strings owned by the registry. */
struct mx_tool {
    enum mx_tool_kind kind;
    char *name;             /* [A-Za-z0-9_-]{1,64}: what the model calls */
    char *description;      /* for the model */
    char *parameters;       /* JSON schema object text (compact) */
    json_t *schema;         /* the same, parsed: the argument check reads it */
    char **argv;            /* commands: argv[0] absolute, NULL-terminated; else NULL */
    double timeout_s;       /* commands: killed after this long */
    size_t max_output;      /* commands: stdout bytes kept (the rest is read and dropped) */
};

/* The registry: what the model is told about and what may run. */
struct mx_tools {
    struct mx_tool *v;      /* n tools: the built-ins first, then the config's in its order */
    size_t n;
    struct mx_tool_def *defs; /* n views of v for the chat template (strings borrowed from v) */
    char **allow_dirs;      /* n_allow realpath'd folders read_file may read below */
    size_t n_allow;
};

/* Builds the registry: read_file (only when at least one folder is allowed: from the config's
 * tools.allow_dirs and extra_dirs[0..n_extra), each resolved with realpath), generate_image when
 * with_image, then the config's "tools" (cfg NULL: none). Returns 0 with *out (mx_tools_free),
 * or MX_EFORMAT / MX_ENOENT / MX_EINVAL with err naming the entry and the problem
 * ("config.json: tools[2].command: the program must be an absolute path"), MX_ENOMEM. */
int mx_tools_new(struct mx_tools **out, const struct mx_config *cfg,
                 const char *const *extra_dirs, size_t n_extra, bool with_image,
                 struct mx_err *err);
void mx_tools_free(struct mx_tools *t); /* NULL ok */

/* The tool called name, or NULL (t NULL ok). */
const struct mx_tool *mx_tools_find(const struct mx_tools *t, const char *name);

/* Checks a call's arguments (JSON object text; NULL or "" mean {}) against the tool's schema:
 * every key declared in "properties" (additional ones refused whatever the schema says: a tool
 * never gets more than it declared), every "required" one present, each value of its declared
 * "type" (string, integer, number, boolean, array, object, null) and in its "enum" when it has
 * one. Returns 0 with *args (a new reference; NULL allowed when the caller needs no copy), or
 * MX_EINVAL with err ("read_file: argument 'mode' is not declared"). */
int mx_tool_check_args(const struct mx_tool *tool, const char *arguments, json_t **args,
                       struct mx_err *err);

/* Polled while a tool runs (every 100 ms): true stops it (killed; MX_ECANCELED). */
typedef bool (*mx_tool_cancel_fn)(void *ud);

/* Runs a call of a tool that runs here (read_file, a user command) after checking its
 * arguments. Returns 0 with *result (caller frees): what the model is told — the file's text,
 * the command's stdout, or for a command that failed its exit status, its stdout and the tail
 * of its stderr. Errors (err says why, for the model and the user): MX_EINVAL (bad arguments),
 * MX_EPERM (a path outside the allowed folders), MX_ENOENT, MX_ERANGE (a file too big),
 * MX_EFORMAT (not text), MX_ETIMEDOUT (killed after timeout_s), MX_ECANCELED, MX_EUNSUP
 * (generate_image: the front end draws it), MX_EIO, MX_ENOMEM. Thread-safe. */
int mx_tool_run(const struct mx_tools *t, const struct mx_tool *tool, const char *arguments,
                mx_tool_cancel_fn canceled, void *ud, char **result, struct mx_err *err);

/* read_file's body: path (absolute, or relative to the first allowed folder) resolved with
 * realpath, inside an allowed folder, a regular file of at most MX_TOOL_READ_MAX bytes of
 * UTF-8 text without NUL bytes. Returns 0 with *text (caller frees) or the errors above. */
int mx_tool_read_file(const struct mx_tools *t, const char *path, char **text,
                      struct mx_err *err);

/* A user command's body: argv[0] run with execve (no shell, no PATH search), args_json on its
 * stdin, stdout kept up to max_output bytes, killed (the whole process group) after timeout_s.
 * Returns 0 with *result as mx_tool_run says, or MX_ETIMEDOUT, MX_ECANCELED, MX_EIO (could not
 * start it), MX_ENOMEM. */
int mx_tool_run_command(const struct mx_tool *tool, const char *args_json,
                        mx_tool_cancel_fn canceled, void *ud, char **result, struct mx_err *err);

/* generate_image's arguments as an image request (prompt, negative; width, height: 64..2048,
 * multiples of 8; steps 1..150; seed >= 0 sets it): fills those fields of *req (zeroed first;
 * mx_image_req_free) and leaves the checkpoint, folders and device to the front end. Returns 0,
 * MX_EINVAL (err: which argument and why) or MX_ENOMEM. */
int mx_tool_image_req(const struct mx_tool *tool, const char *arguments,
                      struct mx_image_req *req, struct mx_err *err);

/* A call in one line for the user: `name(key=value, ...)`, values as JSON, each cut to
 * max_value bytes with "…", control characters never copied. Writes at most size bytes
 * (NUL-terminated) and returns buf. */
char *mx_tool_call_line(const char *name, const char *arguments, size_t max_value, char *buf,
                        size_t size);

/* A tool's result as the template family's tool message carries it: for the Mistral v3/v7
 * families a JSON string literal (mistral_common writes {"content": "<result>", "call_id": ...}
 * with json.dumps, and the chat template inserts the content as is), else the text itself.
 * Returns a malloc'd string (caller frees) or NULL when out of memory. */
char *mx_tool_result_text(enum mx_tmpl_kind kind, const char *result);

/* ---- calls as stored --------------------------------------------------------------------- */

/* Calls as stored with the assistant's message in the history: a JSON array of {"id", "name",
 * "arguments"} (arguments as JSON text). *json: caller frees. Returns 0 or MX_ENOMEM. */
int mx_tool_calls_to_json(const struct mx_tool_call *calls, size_t n, char **json);
/* ... and back (content ""): MX_EFORMAT for text that is not such an array. */
int mx_tool_calls_from_json(const char *json, struct mx_tool_calls *out, struct mx_err *err);

#endif
