/* The C API from C: run by tests/c.rs, under valgrind, with what the Rust API answered.
 *
 *   api_test MODEL MAX_MACS EXPECTED_WIDTH (IMAGE CLASS PROB)...
 *
 * Opens MODEL, selects by a MAC budget (must choose EXPECTED_WIDTH), classifies the
 * images (top-1 must be CLASS with probability PROB within 1e-5), runs them from four
 * threads at once (answers must not change), runs the width cascade, drives the adaptive
 * controller, then walks each error path: every failing call must return its status and
 * a message naming the problem. Prints "api_test: N checks passed" and exits 0, or exits 1 at the first
 * failure. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slim.h"

#define TEST_NAME "api_test"
#include "check.h"

struct batch {
    const SlimModel *model;
    double width;
    const float *input;
    size_t n;
    SlimClass *expected;
    int same; /* out: whether every run answered as `expected` */
};

static void *classify_again(void *arg) {
    struct batch *b = arg;
    SlimClass got[64];
    b->same = 1;
    for (int run = 0; run < 2; run++) {
        if (slim_model_classify(b->model, b->width, b->input, b->n, 1, got, 64) != SLIM_STATUS_OK) {
            b->same = 0;
            return NULL;
        }
        for (size_t i = 0; i < b->n; i++)
            if (got[i].index != b->expected[i].index || got[i].prob != b->expected[i].prob)
                b->same = 0;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 7 || (argc - 4) % 3 != 0) {
        fprintf(stderr, "usage: api_test MODEL MAX_MACS EXPECTED_WIDTH (IMAGE CLASS PROB)...\n");
        return 2;
    }
    const char *dir = argv[1];
    SlimBudget budget = {0};
    budget.max_macs = strtoull(argv[2], NULL, 10);
    double expected_width = atof(argv[3]);
    size_t n = (size_t)(argc - 4) / 3;
    if (n > 64) n = 64;

    CHECK(strlen(slim_version()) > 0, "no version");

    SlimModel *model = NULL;
    OK(slim_model_open(dir, "tract", false, 0, &model));
    SlimModelInfo info;
    OK(slim_model_info(model, &info));
    CHECK(info.image_len == info.channels * info.height * info.width, "image_len %zu", info.image_len);
    CHECK(info.classes == 10 && info.widths == 4, "%zu classes, %zu widths", info.classes, info.widths);

    /* Widths: ask for the count, then fill. */
    size_t count = 0;
    OK(slim_model_widths(model, NULL, 0, &count));
    CHECK(count == info.widths, "count %zu", count);
    SlimWidthInfo widths[8];
    OK(slim_model_widths(model, widths, 8, &count));
    CHECK(widths[0].width == 1.0 && widths[0].macs > widths[count - 1].macs, "widest first");
    size_t emb_dim = 0;
    for (size_t i = 0; i < count; i++)
        if (widths[i].width == expected_width) emb_dim = widths[i].embedding_dim;
    CHECK(emb_dim > 0, "no width %g in the model", expected_width);

    /* Select by budget: a reason sized by a first call. */
    double width = 0;
    size_t reason_len = 0;
    OK(slim_model_select(model, &budget, &width, NULL, 0, &reason_len));
    CHECK(width == expected_width, "selected %g, the Rust API %g", width, expected_width);
    char *reason = malloc(reason_len);
    OK(slim_model_select(model, &budget, &width, reason, reason_len, &reason_len));
    CHECK(strlen(reason) + 1 == reason_len && strstr(reason, "MMACs") != NULL, "reason: %s", reason);
    CHECK_FAILS(slim_model_select(model, &budget, &width, reason, 3, NULL), SLIM_STATUS_BUFFER_TOO_SMALL,
                "reason");
    free(reason);

    /* Preprocess and classify the images. */
    float *input = malloc(n * info.image_len * sizeof(float));
    for (size_t i = 0; i < n; i++)
        OK(slim_model_preprocess_file(model, argv[4 + 3 * i], input + i * info.image_len, info.image_len));
    SlimClass *top = malloc(n * 3 * sizeof(SlimClass));
    OK(slim_model_classify(model, width, input, n, 3, top, n * 3));
    SlimClass *top1 = malloc(n * sizeof(SlimClass));
    for (size_t i = 0; i < n; i++) {
        size_t want = strtoull(argv[5 + 3 * i], NULL, 10);
        double prob = atof(argv[6 + 3 * i]);
        SlimClass *c = &top[3 * i];
        CHECK(c[0].index == want, "image %zu: class %zu, the Rust API %zu", i, c[0].index, want);
        CHECK(fabs(c[0].prob - prob) < 1e-5, "image %zu: p %.7f, the Rust API %.7f", i, c[0].prob, prob);
        CHECK(c[0].prob >= c[1].prob && c[1].prob >= c[2].prob, "image %zu: not sorted", i);
        const char *name = NULL;
        OK(slim_model_class_name(model, c[0].index, &name));
        CHECK(strcmp(name, c[0].name) == 0, "names %s and %s", name, c[0].name);
        top1[i] = c[0];
    }

    /* Embeddings and logits of the same batch: logits agree with the classes. */
    float *emb = malloc(n * emb_dim * sizeof(float));
    float *logits = malloc(n * info.classes * sizeof(float));
    OK(slim_model_run(model, width, input, n, emb, n * emb_dim, logits, n * info.classes));
    for (size_t i = 0; i < n; i++) {
        size_t best = 0;
        for (size_t k = 1; k < info.classes; k++)
            if (logits[i * info.classes + k] > logits[i * info.classes + best]) best = k;
        CHECK(best == top1[i].index, "image %zu: argmax %zu, top-1 %zu", i, best, top1[i].index);
    }
    OK(slim_model_run(model, width, input, n, emb, n * emb_dim, NULL, 0)); /* embeddings alone */

    /* Four threads classify the same batch with one model at once. */
    pthread_t threads[4];
    struct batch jobs[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (struct batch){model, width, input, n, top1, 0};
        CHECK(pthread_create(&threads[t], NULL, classify_again, &jobs[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        CHECK(jobs[t].same, "thread %d answered differently", t);
    }

    /* The cascade over every width: threshold 0 stops at the narrowest; at 0.8 each image
     * stops at the first width at least 0.8 sure, or at the widest; the answer's class is
     * its logits' argmax. */
    SlimCascadeAnswer *answers = malloc(n * sizeof(SlimCascadeAnswer));
    double narrowest = widths[count - 1].width;
    OK(slim_model_cascade(model, "max-prob", 0.0, input, n, answers, n, NULL, 0));
    for (size_t i = 0; i < n; i++)
        CHECK(answers[i].stage == 0 && answers[i].width == narrowest, "image %zu: stage %zu", i,
              answers[i].stage);
    OK(slim_model_cascade(model, "max-prob", 0.8, input, n, answers, n, logits, n * info.classes));
    for (size_t i = 0; i < n; i++) {
        SlimCascadeAnswer *a = &answers[i];
        CHECK(a->confidence >= 0.8f || a->width == 1.0, "image %zu: %g stopped at %g", i, a->confidence,
              a->width);
        CHECK(a->prob == a->confidence, "image %zu: max-prob is the top probability", i);
        size_t best = 0;
        for (size_t k = 1; k < info.classes; k++)
            if (logits[i * info.classes + k] > logits[i * info.classes + best]) best = k;
        CHECK(best == a->class_index && strlen(a->name) > 0, "image %zu: argmax %zu, class %zu", i, best,
              a->class_index);
    }
    OK(slim_model_cascade(model, "margin", 0.5, input, n, answers, n, NULL, 0));
    CHECK_FAILS(slim_model_cascade(model, NULL, 0.0, input, n, answers, n, NULL, 0),
                SLIM_STATUS_INVALID_ARGUMENT, "no calibrated cascade");
    CHECK_FAILS(slim_model_cascade(model, "entropy", 0.5, input, n, answers, n, NULL, 0),
                SLIM_STATUS_INVALID_ARGUMENT, "max-prob or margin");
    CHECK_FAILS(slim_model_cascade(model, "margin", 1.5, input, n, answers, n, NULL, 0),
                SLIM_STATUS_INVALID_ARGUMENT, "threshold is 1.5");
    CHECK_FAILS(slim_model_cascade(model, "margin", 0.5, input, n, answers, n - 1, NULL, 0),
                SLIM_STATUS_BUFFER_TOO_SMALL, "answers");
    CHECK_FAILS(slim_model_cascade(model, "margin", 0.5, input, n, answers, n, logits, 3),
                SLIM_STATUS_BUFFER_TOO_SMALL, "logits");
    free(answers);

    /* The adaptive controller: starts at the widest, runs and observes. */
    SlimAdaptiveConfig cfg = slim_adaptive_config_p95(20.0);
    CHECK(cfg.target_ms == 20.0 && cfg.quantile == 0.95 && cfg.window >= cfg.min_samples, "defaults");
    SlimAdaptive *adaptive = NULL;
    OK(slim_adaptive_new(model, &cfg, &adaptive));
    double now = 0;
    OK(slim_adaptive_width(adaptive, &now));
    CHECK(now == 1.0, "starts at %g", now);
    float wide_logits[10];
    double used = 0;
    OK(slim_adaptive_run(adaptive, model, input, 1, &used, NULL, 0, wide_logits, 10));
    CHECK(used == 1.0, "ran at %g", used);
    bool switched = true;
    SlimSwitch change;
    OK(slim_adaptive_observe(adaptive, 1.0, 1.0, &switched, &change));
    CHECK(!switched, "one fast observation switched");
    cfg.quantile = 2.0;
    SlimAdaptive *bad = NULL;
    CHECK_FAILS(slim_adaptive_new(model, &cfg, &bad), SLIM_STATUS_INVALID_ARGUMENT, "quantile");
    CHECK(bad == NULL, "a failed new leaves its handle NULL");
    slim_adaptive_free(adaptive);

    /* Error paths. */
    SlimModel *missing = NULL;
    CHECK_FAILS(slim_model_open("/nonexistent/model", NULL, false, 0, &missing), SLIM_STATUS_MODEL,
                "/nonexistent/model");
    CHECK(missing == NULL, "a failed open leaves its handle NULL");
    CHECK_FAILS(slim_model_open(dir, "onnx-magic", false, 0, &missing), SLIM_STATUS_INVALID_ARGUMENT,
                "onnx-magic");
    CHECK_FAILS(slim_model_open(NULL, NULL, false, 0, &missing), SLIM_STATUS_INVALID_ARGUMENT, "dir");
    CHECK_FAILS(slim_model_run(model, 0.3, input, 1, NULL, 0, NULL, 0), SLIM_STATUS_NO_SUCH_WIDTH, "0.3");
    CHECK_FAILS(slim_model_run(model, 2.0, input, 1, NULL, 0, NULL, 0), SLIM_STATUS_INVALID_ARGUMENT,
                "width 2");
    CHECK_FAILS(slim_model_run(model, width, input, 0, NULL, 0, NULL, 0), SLIM_STATUS_INVALID_ARGUMENT,
                "batch");
    CHECK_FAILS(slim_model_run(model, width, NULL, 1, NULL, 0, NULL, 0), SLIM_STATUS_INVALID_ARGUMENT,
                "input");
    CHECK_FAILS(slim_model_run(NULL, width, input, 1, NULL, 0, NULL, 0), SLIM_STATUS_INVALID_ARGUMENT,
                "model");
    /* A short buffer: refused before running, and left as it was. */
    logits[0] = -7.0f;
    CHECK_FAILS(slim_model_run(model, width, input, n, NULL, 0, logits, n * info.classes - 1),
                SLIM_STATUS_BUFFER_TOO_SMALL, "logits");
    CHECK(logits[0] == -7.0f, "a short buffer was written");
    CHECK_FAILS(slim_model_classify(model, width, input, n, 3, top, n * 3 - 1), SLIM_STATUS_BUFFER_TOO_SMALL,
                "needs");
    CHECK_FAILS(slim_model_widths(model, widths, 1, &count), SLIM_STATUS_BUFFER_TOO_SMALL, "widths");
    CHECK_FAILS(slim_model_preprocess_file(model, "/nonexistent/cat.png", input, info.image_len),
                SLIM_STATUS_IMAGE, "/nonexistent/cat.png");
    const unsigned char junk[] = "not an image at all";
    CHECK_FAILS(slim_model_preprocess_image(model, junk, sizeof junk, "junk.png", input, info.image_len),
                SLIM_STATUS_IMAGE, "junk.png");
    CHECK_FAILS(slim_model_preprocess_file(model, argv[4], input, info.image_len - 1),
                SLIM_STATUS_BUFFER_TOO_SMALL, "out");
    const char *name = NULL;
    CHECK_FAILS(slim_model_class_name(model, 10, &name), SLIM_STATUS_INVALID_ARGUMENT, "10");
    SlimBudget tiny = {0};
    tiny.max_macs = 1000;
    CHECK_FAILS(slim_model_select(model, &tiny, &width, NULL, 0, NULL), SLIM_STATUS_NO_FIT, "nearest");
    SlimBudget negative = {0};
    negative.min_top1 = 1.5;
    CHECK_FAILS(slim_model_select(model, &negative, &width, NULL, 0, NULL), SLIM_STATUS_INVALID_ARGUMENT,
                "min_top1");

    slim_model_free(model);
    slim_model_free(NULL);
    slim_adaptive_free(NULL);
    free(input);
    free(top);
    free(top1);
    free(emb);
    free(logits);
    printf("api_test: %d checks passed\n", checks);
    return 0;
}
