/* The C API's graphs by width and precision, from C: run by tests/c.rs, under valgrind,
 * on a model exported in f32, f16 and int8, with what the Rust API answered.
 *
 *   variants_test FULL PARTIAL EXPECTED OUTPUTS IMAGE...
 *
 * FULL: the model, with a cached calibration (as tract measures: int8 no faster than f32,
 * f16 of width 1 at 3.0 ms between f32 1.0 at 4.0 and f32 0.25 at 1.0, 0.25/f16 at 0.9).
 * PARTIAL: the same model without width 0.25's f16 graph. EXPECTED: a line per graph in
 * the Rust API's order (width precision macs params bytes embedding_dim). OUTPUTS: per
 * graph, the Rust API's embeddings then logits of IMAGE... as little-endian f32.
 *
 * Checks the listing against the manifest, every graph's outputs against the Rust API's
 * (bit for bit: the same engine on the same inputs), selection by budget with and without
 * a precision list (one kept to f32 never answers another), the adaptive controller over
 * every graph, and that an unknown precision and a graph the model lacks are refused with
 * their status and a message naming them. Prints "variants_test: N checks passed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slim.h"

#define TEST_NAME "variants_test"
#include "check.h"

#define MAX_GRAPHS 8

struct expected {
    double width;
    char precision[8];
    unsigned long long macs, params, bytes;
    size_t embedding_dim;
    const float *embedding, *logits; /* the Rust API's, n images */
};

static int same_variant(SlimVariant v, double width, const char *precision) {
    return v.width == width && strcmp(v.precision, precision) == 0;
}

/* Whether `n` floats are bit for bit the Rust API's (as floats: -0 == 0 is fine too);
 * the first difference is printed. */
static int same_floats(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            fprintf(stderr, "variants_test: [%zu] %.9g != %.9g\n", i, a[i], b[i]);
            return 0;
        }
    return 1;
}

static size_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Selects under a latency limit (ms) among `precisions`; returns its status. */
static SlimStatus select_ms(const SlimModel *model, double ms, const char *precisions, SlimVariant *chosen,
                            char *reason, size_t capacity) {
    SlimBudget budget = {0};
    budget.max_latency_ms = ms;
    budget.latency_batch = 1;
    return slim_model_select_variant(model, &budget, precisions, chosen, reason, capacity, NULL);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: variants_test FULL PARTIAL EXPECTED OUTPUTS IMAGE...\n");
        return 2;
    }
    const char *full_dir = argv[1], *partial_dir = argv[2];
    size_t n = (size_t)(argc - 5);

    SlimModel *model = NULL;
    OK(slim_model_open(full_dir, "tract", false, 0, &model));
    SlimModelInfo info;
    OK(slim_model_info(model, &info));
    CHECK(info.widths == 2 && info.classes == 10, "%zu widths, %zu classes", info.widths, info.classes);

    /* What the Rust API listed and answered. */
    struct expected want[MAX_GRAPHS];
    size_t graphs = 0;
    FILE *f = fopen(argv[3], "r");
    CHECK(f != NULL, "open %s", argv[3]);
    while (graphs < MAX_GRAPHS) {
        struct expected *e = &want[graphs];
        if (fscanf(f, "%lf %7s %llu %llu %llu %zu", &e->width, e->precision, &e->macs, &e->params, &e->bytes,
                   &e->embedding_dim) != 6)
            break;
        graphs++;
    }
    fclose(f);
    CHECK(graphs == 6, "%zu graphs expected", graphs);
    size_t total = 0;
    for (size_t g = 0; g < graphs; g++) total += n * (want[g].embedding_dim + info.classes);
    float *reference = malloc(total * sizeof(float));
    f = fopen(argv[4], "rb");
    CHECK(f != NULL && fread(reference, sizeof(float), total, f) == total, "read %s", argv[4]);
    fclose(f);
    const float *at = reference;
    for (size_t g = 0; g < graphs; g++) {
        want[g].embedding = at;
        at += n * want[g].embedding_dim;
        want[g].logits = at;
        at += n * info.classes;
    }

    /* The listing: every graph in the Rust API's order, with the manifest's costs. */
    size_t count = 0;
    OK(slim_model_variants(model, NULL, 0, &count));
    CHECK(count == graphs, "%zu graphs listed, the Rust API %zu", count, graphs);
    SlimVariantInfo listed[MAX_GRAPHS];
    CHECK_FAILS(slim_model_variants(model, listed, count - 1, &count), SLIM_STATUS_BUFFER_TOO_SMALL,
                "variants");
    OK(slim_model_variants(model, listed, MAX_GRAPHS, &count));
    for (size_t g = 0; g < count; g++) {
        SlimVariantInfo *v = &listed[g];
        struct expected *e = &want[g];
        CHECK(v->width == e->width && strcmp(v->precision, e->precision) == 0, "graph %zu: %g/%s, wanted %g/%s",
              g, v->width, v->precision, e->width, e->precision);
        CHECK(v->macs == e->macs && v->params == e->params && v->bytes == e->bytes &&
                  v->embedding_dim == e->embedding_dim,
              "graph %zu (%g/%s): costs differ from the manifest's", g, v->width, v->precision);
        CHECK(isnan(v->top1) && isnan(v->p50_ms), "graph %zu: nothing was measured", g);
    }
    const char *order[] = {"f32", "f16", "int8", "f32", "f16", "int8"};
    for (size_t g = 0; g < count; g++)
        CHECK(listed[g].width == (g < 3 ? 1.0 : 0.25) && strcmp(listed[g].precision, order[g]) == 0,
              "graph %zu is %g/%s", g, listed[g].width, listed[g].precision);
    /* The same width in every precision costs the same MACs; int8 weighs least. */
    CHECK(listed[2].macs == listed[0].macs && listed[2].bytes < listed[1].bytes &&
              listed[1].bytes < listed[0].bytes,
          "bytes f32 %llu, f16 %llu, int8 %llu", (unsigned long long)listed[0].bytes,
          (unsigned long long)listed[1].bytes, (unsigned long long)listed[2].bytes);

    /* Every graph answers as the Rust API's, and classifies by its logits. */
    float *input = malloc(n * info.image_len * sizeof(float));
    for (size_t i = 0; i < n; i++)
        OK(slim_model_preprocess_file(model, argv[5 + i], input + i * info.image_len, info.image_len));
    float *emb = malloc(n * 64 * sizeof(float));
    float *logits = malloc(n * info.classes * sizeof(float));
    SlimClass top[3];
    for (size_t g = 0; g < graphs; g++) {
        struct expected *e = &want[g];
        CHECK(e->embedding_dim <= 64, "embedding of %zu", e->embedding_dim);
        OK(slim_model_run_variant(model, e->width, e->precision, input, n, emb, n * e->embedding_dim, logits,
                                  n * info.classes));
        CHECK(same_floats(emb, e->embedding, n * e->embedding_dim), "%g/%s: embeddings differ from Rust's",
              e->width, e->precision);
        CHECK(same_floats(logits, e->logits, n * info.classes), "%g/%s: logits differ from Rust's", e->width,
              e->precision);
        /* Not 1/f16 again: tract computes f16 slowly (0.5 s an image here, a minute under
         * valgrind); 0.25/f16 stands for it. */
        if (e->width == 1.0 && strcmp(e->precision, "f16") == 0) continue;
        OK(slim_model_classify_variant(model, e->width, e->precision, input, 1, 3, top, 3));
        CHECK(top[0].index == argmax(e->logits, info.classes) && top[0].prob >= top[1].prob,
              "%g/%s: class %zu", e->width, e->precision, top[0].index);
    }
    /* The graphs differ from each other (so the comparison above tells them apart). */
    CHECK(!same_floats(want[0].logits, want[1].logits, n * info.classes) &&
              !same_floats(want[0].logits, want[2].logits, n * info.classes),
          "f16 or int8 answered exactly as f32");
    /* NULL precision is the float graph, as slim_model_run. */
    OK(slim_model_run_variant(model, 0.25, NULL, input, n, NULL, 0, logits, n * info.classes));
    CHECK(same_floats(logits, want[3].logits, n * info.classes), "NULL precision is not f32");
    OK(slim_model_run(model, 1.0, input, n, NULL, 0, logits, n * info.classes));
    CHECK(same_floats(logits, want[0].logits, n * info.classes), "slim_model_run is not the f32 graph");

    /* Selection by latency (the cached calibration): every precision, or some. */
    SlimVariant chosen;
    char reason[1024];
    OK(select_ms(model, 3.5, NULL, &chosen, reason, sizeof reason));
    CHECK(same_variant(chosen, 1.0, "f16"), "3.5 ms chose %g/%s", chosen.width, chosen.precision);
    CHECK(strstr(reason, "f16 graph") != NULL && strstr(reason, "3.000 ms") != NULL, "reason: %s", reason);
    OK(select_ms(model, 0.95, NULL, &chosen, reason, sizeof reason));
    CHECK(same_variant(chosen, 0.25, "f16"), "0.95 ms chose %g/%s", chosen.width, chosen.precision);
    OK(select_ms(model, 3.5, "f32", &chosen, reason, sizeof reason));
    CHECK(same_variant(chosen, 0.25, "f32"), "3.5 ms in f32 chose %g/%s", chosen.width, chosen.precision);
    CHECK_FAILS(select_ms(model, 0.95, "f32", &chosen, NULL, 0), SLIM_STATUS_NO_FIT, "nearest");
    /* int8 is dominated (no faster than f32 at least as wide): never chosen beside f32... */
    OK(select_ms(model, 3.5, "f32, int8", &chosen, reason, sizeof reason));
    CHECK(same_variant(chosen, 0.25, "f32"), "f32,int8 chose %g/%s", chosen.width, chosen.precision);
    /* ...but chosen when it is all the budget allows. */
    OK(select_ms(model, 10.0, "int8", &chosen, reason, sizeof reason));
    CHECK(same_variant(chosen, 1.0, "int8"), "int8 chose %g/%s", chosen.width, chosen.precision);
    /* A budget kept to f32 never answers f16 or int8, whatever its limits. */
    int f32_answers = 0;
    for (int i = 0; i <= 40; i++) {
        double ms = 0.5 + 0.125 * i;
        SlimStatus s = select_ms(model, ms, "f32", &chosen, NULL, 0);
        CHECK(s == SLIM_STATUS_OK || s == SLIM_STATUS_NO_FIT, "%g ms: status %d", ms, s);
        if (s == SLIM_STATUS_OK) {
            CHECK(strcmp(chosen.precision, "f32") == 0, "%g ms in f32 chose %g/%s", ms, chosen.width,
                  chosen.precision);
            f32_answers++;
        }
        /* Without the list the same budget may choose f16 (1.0/f16 from 3.0 ms to 4.0). */
    }
    CHECK(f32_answers == 37, "%d budgets answered in f32", f32_answers);
    SlimBudget macs = {0};
    macs.max_macs = listed[0].macs;
    OK(slim_model_select_variant(model, &macs, "f32", &chosen, NULL, 0, NULL));
    CHECK(same_variant(chosen, 1.0, "f32"), "MACs in f32 chose %g/%s", chosen.width, chosen.precision);
    /* The width-only call keeps to the float graphs, as before variants. */
    SlimBudget ms_budget = {0};
    ms_budget.max_latency_ms = 3.5;
    double width = 0;
    OK(slim_model_select(model, &ms_budget, &width, NULL, 0, NULL));
    CHECK(width == 0.25, "slim_model_select chose %g", width);
    /* The reason's size, then a short buffer. */
    size_t reason_len = 0;
    OK(slim_model_select_variant(model, &ms_budget, NULL, &chosen, NULL, 0, &reason_len));
    CHECK(reason_len > 1, "reason of %zu bytes", reason_len);
    CHECK_FAILS(slim_model_select_variant(model, &ms_budget, NULL, &chosen, reason, 3, NULL),
                SLIM_STATUS_BUFFER_TOO_SMALL, "reason");
    /* Refused lists. */
    CHECK_FAILS(select_ms(model, 3.5, "fp8", &chosen, NULL, 0), SLIM_STATUS_INVALID_ARGUMENT,
                "unknown precision \"fp8\": one of f32, f16, int8");
    CHECK_FAILS(select_ms(model, 3.5, "f32,,int8", &chosen, NULL, 0), SLIM_STATUS_INVALID_ARGUMENT, "empty name");
    CHECK_FAILS(select_ms(model, 3.5, "", &chosen, NULL, 0), SLIM_STATUS_INVALID_ARGUMENT, "empty name");
    CHECK_FAILS(slim_model_select_variant(model, &ms_budget, NULL, NULL, NULL, 0, NULL),
                SLIM_STATUS_INVALID_ARGUMENT, "chosen is NULL");

    /* An unknown precision, and graphs the model lacks. */
    CHECK_FAILS(slim_model_run_variant(model, 1.0, "fp8", input, 1, NULL, 0, logits, info.classes),
                SLIM_STATUS_INVALID_ARGUMENT, "unknown precision \"fp8\"");
    CHECK_FAILS(slim_model_run_variant(model, 1.0, "F16", input, 1, NULL, 0, logits, info.classes),
                SLIM_STATUS_INVALID_ARGUMENT, "unknown precision \"F16\"");
    CHECK_FAILS(slim_model_classify_variant(model, 1.0, "int4", input, 1, 1, top, 3), SLIM_STATUS_INVALID_ARGUMENT,
                "unknown precision \"int4\"");
    CHECK_FAILS(slim_model_run_variant(model, 0.5, "int8", input, 1, NULL, 0, logits, info.classes),
                SLIM_STATUS_NO_SUCH_WIDTH, "no width 0.5");
    SlimModel *partial = NULL;
    OK(slim_model_open(partial_dir, NULL, false, 0, &partial));
    OK(slim_model_variants(partial, NULL, 0, &count));
    CHECK(count == 5, "the partial model lists %zu graphs", count);
    logits[0] = -7.0f;
    CHECK_FAILS(slim_model_run_variant(partial, 0.25, "f16", input, 1, NULL, 0, logits, info.classes),
                SLIM_STATUS_NO_SUCH_WIDTH, "holds no f16 graph of width 0.25; it has 1, 1/f16, 1/int8, 0.25, 0.25/int8");
    CHECK(logits[0] == -7.0f, "a refused run wrote its output");
    CHECK_FAILS(slim_model_classify_variant(partial, 0.25, "f16", input, 1, 1, top, 3), SLIM_STATUS_NO_SUCH_WIDTH,
                "holds no f16 graph of width 0.25");
    OK(slim_model_run_variant(partial, 0.25, "int8", input, n, NULL, 0, logits, n * info.classes));
    CHECK(same_floats(logits, want[5].logits, n * info.classes), "the partial model's 0.25/int8 differs");
    slim_model_free(partial);

    /* The adaptive controller over every graph steps along the calibrated front. */
    SlimAdaptiveConfig cfg = slim_adaptive_config_p95(10.0);
    cfg.min_samples = 4;
    cfg.window = 8;
    cfg.dwell_ms = 0;
    SlimAdaptive *adaptive = NULL;
    OK(slim_adaptive_new_variants(model, &cfg, &adaptive));
    SlimVariant steps[MAX_GRAPHS];
    OK(slim_adaptive_steps(adaptive, steps, MAX_GRAPHS, &count));
    CHECK(count == 4 && same_variant(steps[0], 1.0, "f32") && same_variant(steps[1], 1.0, "f16") &&
              same_variant(steps[2], 0.25, "f32") && same_variant(steps[3], 0.25, "f16"),
          "%zu steps", count);
    SlimVariant now;
    OK(slim_adaptive_variant(adaptive, &now));
    CHECK(same_variant(now, 1.0, "f32"), "starts at %g/%s", now.width, now.precision);
    SlimVariant used;
    OK(slim_adaptive_run_variant(adaptive, model, input, n, &used, emb, n * 64, logits, n * info.classes));
    CHECK(same_variant(used, 1.0, "f32") && same_floats(logits, want[0].logits, n * info.classes),
          "ran %g/%s", used.width, used.precision);
    /* 50 ms against a 10 ms target: no step is predicted to fit, so the cheapest. */
    bool switched = false;
    SlimVariantSwitch change;
    for (int i = 0; i < 8 && !switched; i++)
        OK(slim_adaptive_observe_variant(adaptive, 1.0, "f32", 50.0, &switched, &change));
    CHECK(switched, "no switch after 8 observations of 50 ms");
    /* (The window also holds the timed run above: observed is at least 50 ms.) */
    CHECK(same_variant(change.from, 1.0, "f32") && same_variant(change.to, 0.25, "f16") &&
              change.observed_ms >= 50.0 && change.predicted_ms > 10.0,
          "switched %g/%s -> %g/%s at %g ms", change.from.width, change.from.precision, change.to.width,
          change.to.precision, change.observed_ms);
    OK(slim_adaptive_variant(adaptive, &now));
    CHECK(same_variant(now, 0.25, "f16"), "now at %g/%s", now.width, now.precision);
    OK(slim_adaptive_width(adaptive, &width));
    CHECK(width == 0.25, "width %g", width);
    OK(slim_adaptive_run_variant(adaptive, model, input, n, &used, emb, n * 64, logits, n * info.classes));
    CHECK(same_variant(used, 0.25, "f16") && same_floats(logits, want[4].logits, n * info.classes) &&
              same_floats(emb, want[4].embedding, n * want[4].embedding_dim),
          "ran %g/%s", used.width, used.precision);
    CHECK_FAILS(slim_adaptive_observe(adaptive, 0.25, 1.0, NULL, NULL), SLIM_STATUS_INVALID_ARGUMENT,
                "slim_adaptive_observe_variant");
    CHECK_FAILS(slim_adaptive_observe_variant(adaptive, 0.25, "fp8", 1.0, NULL, NULL), SLIM_STATUS_INVALID_ARGUMENT,
                "unknown precision \"fp8\"");
    CHECK_FAILS(slim_adaptive_steps(adaptive, steps, 1, &count), SLIM_STATUS_BUFFER_TOO_SMALL, "steps");
    slim_adaptive_free(adaptive);
    /* The width-only controller keeps to the float widths. */
    OK(slim_adaptive_new(model, &cfg, &adaptive));
    OK(slim_adaptive_steps(adaptive, steps, MAX_GRAPHS, &count));
    CHECK(count == 2 && same_variant(steps[0], 1.0, "f32") && same_variant(steps[1], 0.25, "f32"),
          "%zu float steps", count);
    slim_adaptive_free(adaptive);

    slim_model_free(model);
    free(reference);
    free(input);
    free(emb);
    free(logits);
    printf("variants_test: %d checks passed\n", checks);
    return 0;
}
