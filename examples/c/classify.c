/* Classify images with the most accurate width of a slimmable model within a MAC budget.
 *
 *   classify MODEL_DIR MAX_MMACS IMAGE...
 *
 * Build: see README.md beside this file. */
#include <stdio.h>
#include <stdlib.h>

#include "slim.h"

/* Prints the last error after `what` and exits 1. */
static void fail(const char *what) {
    fprintf(stderr, "classify: %s: %s\n", what, slim_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: classify MODEL_DIR MAX_MMACS IMAGE...\n");
        return 2;
    }
    SlimModel *model = NULL;
    if (slim_model_open(argv[1], "tract", false, 0, &model) != SLIM_STATUS_OK) fail("open");

    SlimBudget budget = {0};
    budget.max_macs = (uint64_t)(atof(argv[2]) * 1e6);
    double width;
    char reason[512];
    if (slim_model_select(model, &budget, &width, reason, sizeof reason, NULL) != SLIM_STATUS_OK)
        fail("select");
    printf("width %g: %s\n", width, reason);

    SlimModelInfo info;
    slim_model_info(model, &info);
    float *image = malloc(info.image_len * sizeof(float));
    int status = 0;
    for (int i = 3; i < argc; i++) {
        SlimClass top[3];
        if (slim_model_preprocess_file(model, argv[i], image, info.image_len) != SLIM_STATUS_OK ||
            slim_model_classify(model, width, image, 1, 3, top, 3) != SLIM_STATUS_OK) {
            fprintf(stderr, "classify: %s\n", slim_last_error());
            status = 1;
            continue;
        }
        printf("%s: %s %.3f, %s %.3f, %s %.3f\n", argv[i], top[0].name, top[0].prob, top[1].name,
               top[1].prob, top[2].name, top[2].prob);
    }
    free(image);
    slim_model_free(model);
    return status;
}
