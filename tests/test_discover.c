/* test_discover.c - model auto-discovery over a fake $HOME holding every layout mixel knows:
 * ~/models (nested, shards, a symlink loop, a FIFO, a text file named .gguf, a tiny GGUF), the
 * Hugging Face hub cache (snapshots symlinked into blobs, two revisions of one blob), ollama
 * (manifests of several registries, broken and hostile ones), LM Studio's two folders and the
 * current directory. The exact list, names, order and sizes are asserted, then the header
 * reader (metadata, shards, header-only page faults) and the printed list (inert file names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/format/gguf.h"
#include "core/format/safetensors.h"
#include "core/base/quant.h"
#include "app/discover.h"

#define T0 1700000000L

static char g_root[1024]; /* the temp folder of the current test */

/* ---- fixture helpers ------------------------------------------------------------------------- */

/* root-relative path in a static ring of buffers (enough for one statement's arguments). */
static const char *P(const char *fmt, ...) {
    static char ring[8][4096];
    static int k;
    char rel[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char *b = ring[k++ % 8];
    snprintf(b, 4096, "%s/%s", g_root, rel);
    return b;
}

static void mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *s = tmp + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(tmp, 0755);
            *s = '/';
        }
    }
    assert_true(mkdir(tmp, 0755) == 0 || errno == EEXIST);
}

/* Makes the parent folder of path. */
static void mkparent(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *s = strrchr(tmp, '/');
    *s = '\0';
    mkdirs(tmp);
}

static void set_mtime(const char *path, long t) {
    struct timespec ts[2] = { { t, 0 }, { t, 0 } };
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Writes a GGUF file with one f32 tensor of n_f32 values (n_f32 = 0: no tensors, a ~100-byte
 * file) and general.name = title (NULL: none); mtime t. */
static void write_gguf(const char *path, const char *title, int64_t n_f32, long t) {
    mkparent(path);
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mx_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    if (title)
        assert_int_equal(mx_gguf_writer_set_str(w, "general.name", title), 0);
    if (n_f32 > 0) {
        float *x = calloc((size_t)n_f32, sizeof *x);
        assert_non_null(x);
        int64_t ne[1] = { n_f32 };
        assert_int_equal(mx_gguf_writer_add_tensor(w, "w", MX_TYPE_F32, 1, ne, x), 0);
        free(x);
    }
    struct mx_err err = { 0 };
    assert_int_equal(mx_gguf_writer_write(w, path, 3, &err), 0);
    mx_gguf_writer_free(w);
    set_mtime(path, t);
}

static void write_text(const char *path, const char *text, size_t repeat, long t) {
    mkparent(path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < repeat; i++)
        fputs(text, f);
    fclose(f);
    set_mtime(path, t);
}

static void symlink_to(const char *target, const char *linkpath) {
    mkparent(linkpath);
    assert_int_equal(symlink(target, linkpath), 0);
}

static const char HEX_A[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char HEX_B[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char HEX_C[] = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
static const char HEX_D[] = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

/* An ollama manifest whose model layer is sha256:hex (plus a license layer before it). */
static void write_manifest(const char *rel, const char *digest, long t) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution."
             "manifest.v2+json\",\"config\":{\"mediaType\":\"application/vnd.docker.container."
             "image.v1+json\",\"digest\":\"sha256:%s\",\"size\":485},\"layers\":["
             "{\"mediaType\":\"application/vnd.ollama.image.license\",\"digest\":\"sha256:%s\","
             "\"size\":11357},{\"mediaType\":\"application/vnd.ollama.image.model\","
             "\"digest\":\"%s\",\"size\":4109853248}]}",
             HEX_D, HEX_D, digest);
    write_text(P("home/.ollama/models/manifests/%s", rel), json, 1, t);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        chmod(path, 0755);
    remove(path);
    return 0;
}

static int setup_root(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/mx-discover-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(g_root))
        return -1;
    unsetenv("HF_HOME");
    unsetenv("HF_HUB_CACHE");
    unsetenv("XDG_CACHE_HOME");
    unsetenv("OLLAMA_MODELS");
    return 0;
}

static int teardown_root(void **state) {
    (void)state;
    // chmod'ed-away folders first become readable again (rm_cb gets them post-order, so fix the
    // known one explicitly before walking).
    chmod(P("home/models/locked"), 0755);
    nftw(g_root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    struct stat st;
    return stat(g_root, &st) == 0 ? -1 : 0;
}

/* ---- the full fake home ---------------------------------------------------------------------- */

static void build_home(void) {
    // Hugging Face hub: two revisions link the same blob (listed once, rev1's path), a file in a
    // sub-folder of a snapshot, a repo without an org, a dataset repo (not a model).
    const char *hub = "home/.cache/huggingface/hub";
    write_gguf(P("%s/models--TheOrg--Cool-Model-GGUF/blobs/b1", hub), "Cool", 512, T0 + 100);
    write_gguf(P("%s/models--TheOrg--Cool-Model-GGUF/blobs/b2", hub), NULL, 512, T0 + 90);
    symlink_to("../../blobs/b1", P("%s/models--TheOrg--Cool-Model-GGUF/snapshots/rev1/"
                                   "cool.Q4_K.gguf", hub));
    symlink_to("../../blobs/b1", P("%s/models--TheOrg--Cool-Model-GGUF/snapshots/rev2/"
                                   "cool.Q4_K.gguf", hub));
    symlink_to("../../../blobs/b2", P("%s/models--TheOrg--Cool-Model-GGUF/snapshots/rev2/sub/"
                                      "other.gguf", hub));
    write_gguf(P("%s/models--solo/snapshots/r/s.gguf", hub), NULL, 512, T0 + 5);
    write_gguf(P("%s/datasets--x--y/snapshots/r/d.gguf", hub), NULL, 512, T0 + 500);

    // ollama: library, user namespace and another registry; a second tag of the same blob
    // (listed once: "7b" sorts before "latest"); broken JSON, a digest with a path in it, no
    // model layer, a missing blob, a blob that is not GGUF.
    const char *blobs = "home/.ollama/models/blobs";
    write_gguf(P("%s/sha256-%s", blobs, HEX_A), "Mistral", 512, T0 + 1);
    write_gguf(P("%s/sha256-%s", blobs, HEX_B), NULL, 512, T0 + 2);
    write_gguf(P("%s/sha256-%s", blobs, HEX_C), NULL, 512, T0 + 3);
    write_text(P("%s/sha256-%s", blobs, HEX_D), "not a model, a license text. ", 100, T0 + 4);
    char dg[80];
    snprintf(dg, sizeof dg, "sha256:%s", HEX_A);
    write_manifest("registry.ollama.ai/library/mistral/7b", dg, T0 + 80);
    write_manifest("registry.ollama.ai/library/mistral/latest", dg, T0 + 81);
    snprintf(dg, sizeof dg, "sha256:%s", HEX_B);
    write_manifest("registry.ollama.ai/someuser/thing/q4", dg, T0 + 79);
    snprintf(dg, sizeof dg, "sha256:%s", HEX_C);
    write_manifest("hf.co/bartowski/Foo-GGUF/Q4_K_M", dg, T0 + 78);
    snprintf(dg, sizeof dg, "sha256:%s", HEX_D);
    write_manifest("registry.ollama.ai/library/license-only/latest", dg, T0 + 77);
    write_manifest("registry.ollama.ai/library/evil/latest",
                   "sha256:../../../../models/a.gguf", T0 + 76);
    snprintf(dg, sizeof dg, "sha256:%064d", 7);
    write_manifest("registry.ollama.ai/library/missing/latest", dg, T0 + 75);
    write_text(P("home/.ollama/models/manifests/registry.ollama.ai/library/broken/latest"),
               "{\"layers\": [ {\"mediaType\": ", 1, T0 + 74);
    write_text(P("home/.ollama/models/manifests/registry.ollama.ai/library/nolayer/latest"),
               "{\"layers\": 5}", 1, T0 + 73);

    // LM Studio, both folders.
    write_gguf(P("home/.lmstudio/models/pub/repo/m.gguf"), NULL, 512, T0 + 70);
    write_gguf(P("home/.cache/lm-studio/models/pub2/repo2/n.gguf"), NULL, 512, T0 + 60);

    // ~/models.
    write_gguf(P("home/models/a.gguf"), "A", 512, T0 + 50);
    write_gguf(P("home/models/sub/deep/b.gguf"), NULL, 512, T0 + 40);
    write_gguf(P("home/models/1/2/3/4/ok.gguf"), NULL, 512, T0 + 35);
    write_gguf(P("home/models/1/2/3/4/5/too-deep.gguf"), NULL, 512, T0 + 34);
    write_gguf(P("home/models/split-00001-of-00003.gguf"), NULL, 512, T0 + 30);
    write_gguf(P("home/models/split-00002-of-00003.gguf"), NULL, 1024, T0 + 31);
    write_gguf(P("home/models/split-00003-of-00003.gguf"), NULL, 256, T0 + 32);
    write_gguf(P("home/models/orphan-00002-of-00002.gguf"), NULL, 512, T0 + 33);
    write_gguf(P("home/models/tiny.gguf"), NULL, 0, T0 + 200);        // < 1 KiB
    write_gguf(P("home/models/MODEL.txt"), NULL, 512, T0 + 201);       // not named .gguf
    write_gguf(P("home/models/.hidden/h.gguf"), NULL, 512, T0 + 202);
    write_text(P("home/models/fake.gguf"), "this is not GGUF at all ", 100, T0 + 203);
    write_text(P("home/models/UPPER.GGUF"), "GGUF", 1, T0 + 204);      // magic, but 4 bytes
    symlink_to(".", P("home/models/loop"));                            // loop: models/loop/loop..
    symlink_to("..", P("home/models/sub/deep/up"));                    // loop two levels up
    symlink_to("../.cache/huggingface/hub/models--TheOrg--Cool-Model-GGUF/blobs/b1",
               P("home/models/hf-link.gguf"));                         // same file as the hub's
    symlink_to("nowhere.gguf", P("home/models/dangling.gguf"));
    assert_int_equal(mkfifo(P("home/models/fifo.gguf"), 0644), 0);     // must not hang
    if (geteuid() != 0) {                                              // root reads anything
        write_gguf(P("home/models/locked/x.gguf"), NULL, 512, T0 + 205);
        assert_int_equal(chmod(P("home/models/locked"), 0), 0);
    }

    // The current directory: its own files only; a link to a ~/models file is a duplicate.
    write_gguf(P("work/c.gguf"), NULL, 512, T0 + 20);
    write_gguf(P("work/sub/d.gguf"), NULL, 512, T0 + 300);
    symlink_to("../home/models/a.gguf", P("work/a-link.gguf"));
}

struct want {
    const char *name;
    enum mx_model_source src;
    const char *path;  /* relative to g_root */
    long mtime;
    int n_shards;
};

static void check_list(const struct mx_model_list *l, const struct want *w, size_t n) {
    for (size_t i = 0; i < l->n; i++)
        printf("  %zu: %s | %s | %lld\n", i, l->items[i].name, l->items[i].path,
               (long long)l->items[i].mtime);
    assert_int_equal(l->n, n);
    for (size_t i = 0; i < n; i++) {
        const struct mx_model_entry *e = &l->items[i];
        assert_string_equal(e->name, w[i].name);
        assert_int_equal(e->source, w[i].src);
        assert_string_equal(e->path, P("%s", w[i].path));
        assert_int_equal(e->mtime, w[i].mtime);
        assert_int_equal(e->n_shards, w[i].n_shards);
        assert_int_equal(e->meta, 0);
        assert_non_null(e->real);
        assert_int_equal(e->real[0], '/');
    }
}

static void test_finds_every_layout_in_order(void **state) {
    (void)state;
    build_home();
    struct mx_model_list l;
    struct mx_err err = { 0 };
    assert_int_equal(mx_discover_models(P("home"), P("work"), &l, &err), 0);
    const char *cool = "home/.cache/huggingface/hub/models--TheOrg--Cool-Model-GGUF";
    char p1[512], p2[512], oa[512], ob[512], oc[512];
    snprintf(p1, sizeof p1, "%s/snapshots/rev1/cool.Q4_K.gguf", cool);
    snprintf(p2, sizeof p2, "%s/snapshots/rev2/sub/other.gguf", cool);
    snprintf(oa, sizeof oa, "home/.ollama/models/blobs/sha256-%s", HEX_A);
    snprintf(ob, sizeof ob, "home/.ollama/models/blobs/sha256-%s", HEX_B);
    snprintf(oc, sizeof oc, "home/.ollama/models/blobs/sha256-%s", HEX_C);
    const struct want w[] = {
        { "TheOrg/Cool-Model-GGUF: cool.Q4_K.gguf", MX_SRC_HF, p1, T0 + 100, 1 },
        { "TheOrg/Cool-Model-GGUF: sub/other.gguf", MX_SRC_HF, p2, T0 + 90, 1 },
        { "mistral:7b (ollama)", MX_SRC_OLLAMA, oa, T0 + 80, 1 },
        { "someuser/thing:q4 (ollama)", MX_SRC_OLLAMA, ob, T0 + 79, 1 },
        { "hf.co/bartowski/Foo-GGUF:Q4_K_M (ollama)", MX_SRC_OLLAMA, oc, T0 + 78, 1 },
        { "pub/repo: m.gguf", MX_SRC_LMSTUDIO, "home/.lmstudio/models/pub/repo/m.gguf",
          T0 + 70, 1 },
        { "pub2/repo2: n.gguf", MX_SRC_LMSTUDIO,
          "home/.cache/lm-studio/models/pub2/repo2/n.gguf", T0 + 60, 1 },
        { "a.gguf", MX_SRC_MODELS, "home/models/a.gguf", T0 + 50, 1 },
        { "sub/deep/b.gguf", MX_SRC_MODELS, "home/models/sub/deep/b.gguf", T0 + 40, 1 },
        { "1/2/3/4/ok.gguf", MX_SRC_MODELS, "home/models/1/2/3/4/ok.gguf", T0 + 35, 1 },
        { "split-00001-of-00003.gguf", MX_SRC_MODELS, "home/models/split-00001-of-00003.gguf",
          T0 + 30, 3 },
        { "c.gguf", MX_SRC_CWD, "work/c.gguf", T0 + 20, 1 },
        { "solo: s.gguf", MX_SRC_HF, "home/.cache/huggingface/hub/models--solo/snapshots/r/s.gguf",
          T0 + 5, 1 },
    };
    check_list(&l, w, sizeof w / sizeof w[0]);
    assert_false(l.truncated);
    assert_true(l.n_visited > 30 && l.n_visited < 200);

    // Sizes: each file's own; a split model's, all three shards together.
    struct stat st;
    assert_int_equal(stat(P("home/models/a.gguf"), &st), 0);
    assert_int_equal(l.items[7].size, (uint64_t)st.st_size);
    assert_true(st.st_size > 2048 && st.st_size < 4096);
    uint64_t total = 0;
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(stat(P("home/models/split-0000%d-of-00003.gguf", i), &st), 0);
        total += (uint64_t)st.st_size;
    }
    assert_int_equal(l.items[10].size, total);
    // The hub file resolves into blobs/.
    assert_string_equal(l.items[0].real, P("%s/blobs/b1", cool));
    mx_model_list_free(&l);
    assert_null(l.items);
    assert_int_equal(l.n, 0);
    mx_model_list_free(NULL);
}

static void test_environment_overrides_and_no_home(void **state) {
    (void)state;
    char dg[80];
    write_gguf(P("elsewhere/hf/hub/models--o--n/snapshots/r/x.gguf"), NULL, 512, T0 + 3);
    write_gguf(P("elsewhere/ollama/blobs/sha256-%s", HEX_B), NULL, 512, T0);
    snprintf(dg, sizeof dg, "sha256:%s", HEX_B);
    write_manifest("registry.ollama.ai/library/m/t", dg, T0 + 2);  // under home: ignored
    char json[512];
    snprintf(json, sizeof json, "{\"layers\":[{\"mediaType\":\"application/vnd.ollama.image."
             "model\",\"digest\":\"%s\"}]}", dg);
    write_text(P("elsewhere/ollama/manifests/registry.ollama.ai/library/env/v1"), json, 1, T0 + 1);
    // Ollama before 0.1.30 named blobs "sha256:HEX".
    write_gguf(P("elsewhere/ollama/blobs/sha256:%s", HEX_C), NULL, 512, T0);
    snprintf(json, sizeof json, "{\"layers\":[{\"mediaType\":\"application/vnd.ollama.image."
             "model\",\"digest\":\"sha256:%s\"}]}", HEX_C);
    write_text(P("elsewhere/ollama/manifests/registry.ollama.ai/library/old/v0"), json, 1, T0);
    write_gguf(P("home/.cache/huggingface/hub/models--home--only/snapshots/r/h.gguf"), NULL, 512,
               T0 + 9);
    setenv("HF_HOME", P("elsewhere/hf"), 1);
    setenv("OLLAMA_MODELS", P("elsewhere/ollama"), 1);

    struct mx_model_list l;
    assert_int_equal(mx_discover_models(NULL, NULL, &l, NULL), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].name, "o/n: x.gguf");
    assert_string_equal(l.items[1].name, "env:v1 (ollama)");
    assert_string_equal(l.items[2].name, "old:v0 (ollama)");
    assert_string_equal(l.items[2].path, P("elsewhere/ollama/blobs/sha256:%s", HEX_C));
    mx_model_list_free(&l);

    // HF_HUB_CACHE wins over HF_HOME; with both unset, XDG_CACHE_HOME, then ~/.cache.
    setenv("HF_HUB_CACHE", P("home/.cache/huggingface/hub"), 1);
    assert_int_equal(mx_discover_models(P("home"), NULL, &l, NULL), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].name, "home/only: h.gguf");
    mx_model_list_free(&l);
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("OLLAMA_MODELS");
    setenv("XDG_CACHE_HOME", P("elsewhere"), 1);  // no huggingface/ there
    assert_int_equal(mx_discover_models(P("home"), "", &l, NULL), 0);
    assert_int_equal(l.n, 0);  // home's ollama manifest points to a blob home lacks
    mx_model_list_free(&l);
    unsetenv("XDG_CACHE_HOME");
    assert_int_equal(mx_discover_models(P("home"), NULL, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].name, "home/only: h.gguf");
    mx_model_list_free(&l);

    // Missing places are not errors; a NULL list is.
    assert_int_equal(mx_discover_models(P("nope"), P("nope/either"), &l, NULL), 0);
    assert_int_equal(l.n, 0);
    mx_model_list_free(&l);
    struct mx_err err = { 0 };
    assert_int_equal(mx_discover_models(NULL, NULL, NULL, &err), MX_EINVAL);
    assert_true(err.msg[0] != '\0');
}

static void test_budget_stops_a_huge_tree(void **state) {
    (void)state;
    // 60 folders of 3 entries each (a GGUF file, a symlink to it, a readme). With a budget of
    // 99 entries: 60 for ~/models itself, then 13 folders of 3, so exactly d000..d012 are found
    // and truncated is set when d013 is opened.
    for (int i = 0; i < 60; i++) {
        write_gguf(P("home/models/d%03d/m.gguf", i), NULL, 300, T0 + i);
        symlink_to("m.gguf", P("home/models/d%03d/again.gguf", i));
        write_text(P("home/models/d%03d/readme.md", i), "x", 1, T0);
    }
    struct mx_model_list l;
    assert_int_equal(mx_discover_models_ex(P("home"), NULL, 99, &l, NULL), 0);
    assert_true(l.truncated);
    assert_int_equal(l.n_visited, 99);
    assert_int_equal(l.n, 13);
    assert_string_equal(l.items[0].name, "d012/again.gguf");
    mx_model_list_free(&l);
    assert_int_equal(mx_discover_models_ex(P("home"), NULL, 100000, &l, NULL), 0);
    assert_false(l.truncated);
    assert_int_equal(l.n_visited, 60 * 4);
    assert_int_equal(l.n, 60);
    assert_string_equal(l.items[0].name, "d059/again.gguf");  // duplicates: first name wins
    assert_string_equal(l.items[59].name, "d000/again.gguf");
    assert_string_equal(l.items[59].real, P("home/models/d000/m.gguf"));
    mx_model_list_free(&l);
}

/* A model with real metadata: an 8-expert MoE header, q8_0 weights and an f32 norm. */
static void write_moe(const char *path, const char *title, const char *split_key_val) {
    mkparent(path);
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mx_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    if (title)
        assert_int_equal(mx_gguf_writer_set_str(w, "general.name", title), 0);
    assert_int_equal(mx_gguf_writer_set_u32(w, "llama.expert_count", 8), 0);
    assert_int_equal(mx_gguf_writer_set_u32(w, "llama.expert_used_count", 2), 0);
    assert_int_equal(mx_gguf_writer_set_u32(w, "llama.context_length", 32768), 0);
    if (split_key_val)
        assert_int_equal(mx_gguf_writer_set_str(w, "note", split_key_val), 0);
    static uint8_t q[4 * 8 * 34];
    int64_t ne_q[2] = { 256, 4 };
    assert_int_equal(mx_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", MX_TYPE_Q8_0, 2, ne_q,
                                               q), 0);
    static float nrm[256];
    int64_t ne_n[1] = { 256 };
    assert_int_equal(mx_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", MX_TYPE_F32, 1, ne_n,
                                               nrm), 0);
    assert_int_equal(mx_gguf_writer_write(w, path, 3, NULL), 0);
    mx_gguf_writer_free(w);
}

static void test_header_metadata(void **state) {
    (void)state;
    write_moe(P("home/models/moe.gguf"), "Tiny Mix 8x1K", NULL);
    set_mtime(P("home/models/moe.gguf"), T0 + 10);
    // A split model: the parameters of all shards count.
    write_moe(P("home/models/big-00001-of-00002.gguf"), "Big", NULL);
    write_moe(P("home/models/big-00002-of-00002.gguf"), NULL, "second");
    set_mtime(P("home/models/big-00001-of-00002.gguf"), T0 + 5);
    // Magic right, header garbage: listed, marked unreadable.
    write_text(P("home/models/bad.gguf"), "GGUF\x03", 1, T0);
    FILE *f = fopen(P("home/models/bad.gguf"), "ab");
    for (int i = 0; i < 2000; i++)
        fputc(0xff, f);
    fclose(f);
    set_mtime(P("home/models/bad.gguf"), T0 + 1);

    struct mx_model_list l;
    assert_int_equal(mx_discover_models(P("home"), NULL, &l, NULL), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(mx_discover_read_meta_all(&l), 2);

    const struct mx_model_entry *e = &l.items[0];
    assert_string_equal(e->name, "moe.gguf");
    assert_int_equal(e->meta, 1);
    assert_string_equal(e->title, "Tiny Mix 8x1K");
    assert_string_equal(e->arch, "llama");
    assert_int_equal(e->n_params, 256 * 4 + 256);
    assert_int_equal(e->n_experts, 8);
    assert_int_equal(e->n_experts_used, 2);
    assert_int_equal(e->n_ctx_train, 32768);
    assert_int_equal(e->main_type, MX_TYPE_Q8_0);  // the f32 norm is 1-D and does not count
    char want[256], sz[32], got[256];
    mx_discover_format_size(e->size, sz, sizeof sz);
    snprintf(want, sizeof want, "Tiny Mix 8x1K · 1.3K llama 8x2 · q8_0 · %s", sz);
    assert_int_equal(mx_discover_describe(e, got, sizeof got), strlen(want));
    assert_string_equal(got, want);

    e = &l.items[1];
    assert_string_equal(e->name, "big-00001-of-00002.gguf");
    assert_int_equal(e->n_shards, 2);
    assert_int_equal(e->n_params, 2 * (256 * 4 + 256));
    assert_string_equal(e->title, "Big");

    e = &l.items[2];
    assert_string_equal(e->name, "bad.gguf");
    assert_int_equal(e->meta, -1);
    assert_true(strstr(e->meta_err, "bad.gguf") != NULL);
    assert_int_equal(e->main_type, -1);
    mx_discover_describe(e, got, sizeof got);
    assert_string_equal(got, "unreadable · 2.0 KB");
    // snprintf-style: a short buffer is cut and terminated, the full length is reported.
    char tiny[5];
    assert_int_equal(mx_discover_describe(&l.items[0], tiny, sizeof tiny), strlen(want));
    assert_string_equal(tiny, "Tiny");

    // Re-reading an entry replaces (does not leak) what it held.
    struct mx_err err = { 0 };
    assert_int_equal(mx_discover_read_meta(&l.items[0], &err), 0);
    assert_string_equal(l.items[0].title, "Tiny Mix 8x1K");
    mx_model_list_free(&l);
}

static void test_header_read_touches_only_the_header(void **state) {
    (void)state;
    // 32 MiB of tensor data (8192 pages): reading the header must fault in a handful of pages,
    // not the data (the file is in the page cache, so each touched page is a minor fault).
    write_gguf(P("home/models/big.gguf"), "Big", 8 << 20, T0);
    struct mx_model_list l;
    assert_int_equal(mx_discover_models(P("home"), NULL, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    assert_int_equal(mx_discover_read_meta(&l.items[0], NULL), 0);
    getrusage(RUSAGE_SELF, &r1);
    long faults = r1.ru_minflt - r0.ru_minflt + r1.ru_majflt - r0.ru_majflt;
    printf("  header read of a 32 MiB file: %ld page faults\n", faults);
    assert_true(faults < 200);
    assert_int_equal(l.items[0].n_params, 8 << 20);
    assert_int_equal(l.items[0].main_type, -1);  // only a 1-D tensor: no weight type
    mx_model_list_free(&l);
}

/* -m NAME: a name as the list shows it, without its "(ollama)" tag, or a file's own name opens
 * that file; the same file reached twice is one answer; two files of one name and unknown names
 * are errors that say so. */
static void test_resolve_names(void **state) {
    (void)state;
    build_home();
    write_gguf(P("work/b.gguf"), NULL, 512, T0 + 21); /* a second b.gguf (~/models has one) */
    struct mx_err err = { 0 };
    char *path = NULL, want[512];
    assert_int_equal(mx_discover_resolve(P("home"), P("work"), "mistral:7b", &path, &err), 0);
    snprintf(want, sizeof want, "home/.ollama/models/blobs/sha256-%s", HEX_A);
    assert_non_null(strstr(path, want));
    free(path);
    assert_int_equal(mx_discover_resolve(P("home"), P("work"), "mistral:7b (ollama)", &path,
                                         &err), 0);
    free(path);
    assert_int_equal(mx_discover_resolve(P("home"), P("work"), "someuser/thing:q4", &path,
                                         &err), 0);
    snprintf(want, sizeof want, "sha256-%s", HEX_B);
    assert_non_null(strstr(path, want));
    free(path);
    assert_int_equal(mx_discover_resolve(P("home"), P("work"), "sub/deep/b.gguf", &path, &err),
                     0);
    assert_non_null(strstr(path, "home/models/sub/deep/b.gguf"));
    free(path);
    /* the hub file and ~/models/hf-link.gguf are one file */
    assert_int_equal(mx_discover_resolve(P("home"), P("work"), "cool.Q4_K.gguf", &path, &err),
                     0);
    free(path);
    assert_int_equal(mx_discover_resolve(P("home"), P("work"), "b.gguf", &path, &err),
                     MX_EINVAL);
    assert_null(path);
    assert_non_null(strstr(err.msg, "2 models have that name"));
    mx_err_clear(&err);
    assert_int_equal(mx_discover_resolve(P("home"), P("work"), "mistral:latest-nope", &path,
                                         &err), MX_ENOENT);
    assert_non_null(strstr(err.msg, "mixel list"));
}

static void test_print_is_inert_and_explains_model_flag(void **state) {
    (void)state;
    char cwd0[4096];
    assert_non_null(getcwd(cwd0, sizeof cwd0));
    const char *home0 = getenv("HOME");
    char *saved = home0 ? strdup(home0) : NULL;
    mkdirs(P("empty-home"));
    setenv("HOME", P("empty-home"), 1);
    assert_int_equal(chdir(P("empty-home")), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(mx_discover_print(f), 0);
    fclose(f);
    assert_true(strstr(buf, "--model") != NULL);
    free(buf);

    // A file name with an OSC title sequence and a title with a CSI: shown as ^[, never raw.
    write_gguf(P("home/models/evil\x1b]0;pwned\x07.gguf"), "x\x1b[2Jy", 512, T0);
    setenv("HOME", P("home"), 1);
    f = open_memstream(&buf, &len);
    assert_int_equal(mx_discover_print(f), 1);
    fclose(f);
    printf("%s", buf);
    assert_null(strchr(buf, '\x1b'));
    assert_null(strchr(buf, '\x07'));
    assert_true(strstr(buf, "evil^[]0;pwned^G.gguf") != NULL);
    assert_true(strstr(buf, "x^[[2Jy") != NULL);
    free(buf);

    assert_int_equal(chdir(cwd0), 0);
    if (saved)
        setenv("HOME", saved, 1);
    free(saved);
}

/* ---- Stable Diffusion checkpoints ----------------------------------------------------------- */

/* Writes a safetensors file holding a UNet cross-attention key of width ctx under prefix (ctx 0:
 * a file of other keys), padded past the 1 KiB floor by a "pad" tensor; mtime t. */
static void write_st(const char *path, const char *prefix, int64_t ctx, const char *extra_key,
                     long t) {
    mkparent(path);
    struct mx_st_writer *w = mx_st_writer_new();
    assert_non_null(w);
    char key[256];
    static const float x[2048]; /* zeros: the widest context, SDXL */
    if (ctx > 0) {
        snprintf(key, sizeof key, "%sinput_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                 prefix);
        int64_t shape[2] = { 1, ctx };
        assert_int_equal(mx_st_writer_add_tensor(w, key, MX_ST_F32, 2, shape, x), 0);
    }
    if (extra_key) {
        int64_t shape[1] = { 4 };
        assert_int_equal(mx_st_writer_add_tensor(w, extra_key, MX_ST_F32, 1, shape, x), 0);
    }
    int64_t pad[1] = { 300 };
    assert_int_equal(mx_st_writer_add_tensor(w, "pad", MX_ST_F32, 1, pad, x), 0);
    struct mx_err err = { 0 };
    assert_int_equal(mx_st_writer_write(w, path, &err), 0);
    mx_st_writer_free(w);
    set_mtime(path, t);
}

/* A diffusers folder: model_index.json naming cls, unet/config.json with the context width
 * (28 or 29 bytes), 4500 bytes of weights in unet/, vae/ and text_encoder/; mtime t. */
static void write_diffusers(const char *dir, const char *cls, int ctx, long t) {
    char buf[256];
    snprintf(buf, sizeof buf, "{\"_class_name\": \"%s\", \"unet\": [\"diffusers\", "
             "\"UNet2DConditionModel\"]}", cls);
    snprintf(buf + 128, 128, "{\"cross_attention_dim\": %d}", ctx);
    write_text(P("%s/unet/config.json", dir), buf + 128, 1, t);
    write_text(P("%s/unet/diffusion_pytorch_model.safetensors", dir), "u", 3000, t);
    write_text(P("%s/vae/diffusion_pytorch_model.safetensors", dir), "v", 1000, t);
    write_text(P("%s/text_encoder/model.safetensors", dir), "t", 500, t);
    write_text(P("%s/model_index.json", dir), buf, 1, t);
}

/* Every SD layout: A1111 and Forge, ComfyUI, a configured folder, hub diffusers snapshots and
 * single files, ~/models, the current folder; non-SD safetensors (a VAE, a diffusers UNet, an
 * LLM shard, garbage, a FIFO, a tiny file), a non-SD pipeline, duplicates by symlink. The exact
 * list, names, sources, order, kinds and sizes; then resolve and the printed section. */
static void test_sd_checkpoints(void **state) {
    (void)state;
    const char *ldm = "model.diffusion_model.";
    write_st(P("home/stable-diffusion-webui/models/Stable-diffusion/v1-5.safetensors"), ldm, 768,
             "first_stage_model.decoder.conv_in.weight", T0 + 10);
    write_st(P("home/stable-diffusion-webui/models/Stable-diffusion/XL/sdxl.safetensors"), ldm,
             2048, NULL, T0 + 11);
    write_st(P("home/stable-diffusion-webui/models/Stable-diffusion/vae.safetensors"), "", 0,
             "first_stage_model.decoder.conv_in.weight", T0 + 12);
    write_text(P("home/stable-diffusion-webui/models/Stable-diffusion/old.ckpt"), "PK", 1000,
               T0 + 13);
    write_text(P("home/stable-diffusion-webui/models/Stable-diffusion/junk.safetensors"),
               "\xff\xff\xff\xff\xff\xff\xff\x7f{", 200, T0 + 14);
    write_st(P("home/stable-diffusion-webui-forge/models/Stable-diffusion/sd2.safetensors"), ldm,
             1024, NULL, T0 + 15);
    write_st(P("home/ComfyUI/models/checkpoints/comfy.safetensors"), ldm, 768, NULL, T0 + 16);
    assert_int_equal(mkfifo(P("home/ComfyUI/models/checkpoints/fifo.safetensors"), 0644), 0);
    write_st(P("cfg/mine.safetensors"), ldm, 768, NULL, T0 + 17);
    // The same file as the A1111 one, reached from ComfyUI: listed once, under A1111.
    symlink_to("../../../stable-diffusion-webui/models/Stable-diffusion/v1-5.safetensors",
               P("home/ComfyUI/models/checkpoints/v1-5-link.safetensors"));

    const char *hub = "home/.cache/huggingface/hub";
    write_diffusers(P("%s/models--runwayml--sd-v1-5/snapshots/r1", hub) + strlen(g_root) + 1,
                    "StableDiffusionPipeline", 768, T0 + 20);
    write_st(P("%s/models--runwayml--sd-v1-5/snapshots/r1/v1-5-pruned.safetensors", hub), ldm,
             768, NULL, T0 + 21);
    write_diffusers(P("%s/models--other--flux/snapshots/r1", hub) + strlen(g_root) + 1,
                    "FluxPipeline", 4096, T0 + 22);
    write_st(P("%s/models--org--llm/snapshots/r1/model-00001-of-00002.safetensors", hub), "", 0,
             "model.layers.0.mlp.up_proj.weight", T0 + 23);

    write_diffusers("home/models/my-xl", "StableDiffusionXLPipeline", 2048, T0 + 30);
    write_st(P("home/models/sub/m.safetensors"), ldm, 768, NULL, T0 + 31);
    write_st(P("home/models/unet-only.safetensors"), "", 0,
             "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", T0 + 32);
    write_text(P("home/models/tiny.safetensors"), "x", 10, T0 + 33);
    write_gguf(P("home/models/llm.gguf"), NULL, 512, T0 + 34);
    write_st(P("work/here.safetensors"), ldm, 768, NULL, T0 + 40);
    write_st(P("work/sub/not-here.safetensors"), ldm, 768, NULL, T0 + 41);

    struct mx_model_list l;
    struct mx_err err = { 0 };
    const char *dirs[] = { P("cfg"), NULL };
    assert_int_equal(mx_discover_sd(P("home"), P("work"), dirs, 0, &l, &err), 0);
    static const struct {
        const char *name;
        enum mx_model_source src;
        const char *path;
        long mtime;
        const char *kind;  /* prefix of sd_kind */
        uint64_t size;     /* 0: the file's */
    } want[] = {
        { "here.safetensors", MX_SRC_CWD, "work/here.safetensors", T0 + 40, "SD 1.x checkpoint", 0 },
        { "sub/m.safetensors", MX_SRC_MODELS, "home/models/sub/m.safetensors", T0 + 31,
          "SD 1.x checkpoint", 0 },
        { "my-xl", MX_SRC_MODELS, "home/models/my-xl", T0 + 30,
          "SDXL diffusers folder (StableDiffusionXLPipeline)", 4500 + 29 },
        { "runwayml/sd-v1-5: v1-5-pruned.safetensors", MX_SRC_HF,
          "home/.cache/huggingface/hub/models--runwayml--sd-v1-5/snapshots/r1/"
          "v1-5-pruned.safetensors", T0 + 21, "SD 1.x checkpoint", 0 },
        { "runwayml/sd-v1-5", MX_SRC_HF,
          "home/.cache/huggingface/hub/models--runwayml--sd-v1-5/snapshots/r1", T0 + 20,
          "SD 1.x diffusers folder (StableDiffusionPipeline)", 4500 + 28 },
        { "mine.safetensors", MX_SRC_CONFIG, "cfg/mine.safetensors", T0 + 17,
          "SD 1.x checkpoint", 0 },
        { "comfy.safetensors", MX_SRC_COMFYUI, "home/ComfyUI/models/checkpoints/comfy.safetensors",
          T0 + 16, "SD 1.x checkpoint", 0 },
        { "sd2.safetensors", MX_SRC_A1111,
          "home/stable-diffusion-webui-forge/models/Stable-diffusion/sd2.safetensors", T0 + 15,
          "SD 2.x checkpoint", 0 },
        { "XL/sdxl.safetensors", MX_SRC_A1111,
          "home/stable-diffusion-webui/models/Stable-diffusion/XL/sdxl.safetensors", T0 + 11,
          "SDXL checkpoint", 0 },
        { "v1-5.safetensors", MX_SRC_A1111,
          "home/stable-diffusion-webui/models/Stable-diffusion/v1-5.safetensors", T0 + 10,
          "SD 1.x checkpoint (CompVis/LDM key names): UNet + VAE", 0 },
    };
    size_t n_want = sizeof want / sizeof want[0];
    for (size_t i = 0; i < l.n; i++)
        printf("  %zu: %s | %s | %s | %lld\n", i, l.items[i].name, l.items[i].sd_kind,
               l.items[i].path, (long long)l.items[i].mtime);
    assert_int_equal(l.n, n_want);
    for (size_t i = 0; i < n_want; i++) {
        const struct mx_model_entry *e = &l.items[i];
        assert_string_equal(e->name, want[i].name);
        assert_int_equal(e->source, want[i].src);
        assert_string_equal(e->path, P("%s", want[i].path));
        assert_int_equal(e->mtime, want[i].mtime);
        assert_non_null(e->sd_kind);
        assert_memory_equal(e->sd_kind, want[i].kind, strlen(want[i].kind));
        struct stat st;
        assert_int_equal(stat(e->path, &st), 0);
        assert_int_equal(e->size, want[i].size ? want[i].size : (uint64_t)st.st_size);
        char desc[512];
        mx_discover_describe(e, desc, sizeof desc);
        assert_non_null(strstr(desc, want[i].kind));
    }
    mx_model_list_free(&l);

    // Without home, cwd or dirs: nothing, no error; a tiny budget stops early.
    assert_int_equal(mx_discover_sd(NULL, NULL, NULL, 0, &l, &err), 0);
    assert_int_equal(l.n, 0);
    mx_model_list_free(&l);
    assert_int_equal(mx_discover_sd(P("home"), NULL, NULL, 5, &l, &err), 0);
    assert_true(l.truncated);
    mx_model_list_free(&l);

    // Names resolve as listed, by file or folder name too; GGUF discovery is unchanged.
    char *path = NULL;
    assert_int_equal(mx_discover_sd_resolve(P("home"), P("work"), NULL, "XL/sdxl.safetensors",
                                            &path, &err), 0);
    assert_string_equal(path, P("home/stable-diffusion-webui/models/Stable-diffusion/XL/"
                                "sdxl.safetensors"));
    free(path);
    assert_int_equal(mx_discover_sd_resolve(P("home"), P("work"), NULL, "my-xl", &path, &err), 0);
    assert_string_equal(path, P("home/models/my-xl"));
    free(path);
    mx_err_clear(&err);
    assert_int_equal(mx_discover_sd_resolve(P("home"), P("work"), NULL, "vae.safetensors", &path,
                                            &err), MX_ENOENT);
    assert_non_null(strstr(err.msg, "no checkpoint of that name"));
    assert_int_equal(mx_discover_models(P("home"), NULL, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_null(l.items[0].sd_kind);
    mx_model_list_free(&l);

    // `mixel list` prints them in their own section.
    char cwd0[4096];
    assert_non_null(getcwd(cwd0, sizeof cwd0));
    const char *home0 = getenv("HOME");
    char *saved = home0 ? strdup(home0) : NULL;
    setenv("HOME", P("home"), 1);
    assert_int_equal(chdir(P("work")), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(mx_discover_print(f), 1);
    fclose(f);
    printf("%s", buf);
    const char *sec = strstr(buf, "9 Stable Diffusion checkpoints found");
    assert_non_null(sec);
    assert_true(sec > strstr(buf, "llm.gguf"));
    assert_non_null(strstr(sec, "runwayml/sd-v1-5  [huggingface]"));
    assert_non_null(strstr(sec, "v1-5.safetensors  [a1111]"));
    free(buf);
    assert_int_equal(chdir(cwd0), 0);
    if (saved)
        setenv("HOME", saved, 1);
    else
        unsetenv("HOME");
    free(saved);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_finds_every_layout_in_order, setup_root,
                                        teardown_root),
        cmocka_unit_test_setup_teardown(test_environment_overrides_and_no_home, setup_root,
                                        teardown_root),
        cmocka_unit_test_setup_teardown(test_budget_stops_a_huge_tree, setup_root,
                                        teardown_root),
        cmocka_unit_test_setup_teardown(test_header_metadata, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_header_read_touches_only_the_header, setup_root,
                                        teardown_root),
        cmocka_unit_test_setup_teardown(test_resolve_names, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_print_is_inert_and_explains_model_flag, setup_root,
                                        teardown_root),
        cmocka_unit_test_setup_teardown(test_sd_checkpoints, setup_root, teardown_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
