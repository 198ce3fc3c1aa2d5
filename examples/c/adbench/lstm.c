/* ADBench's LSTM loss in the C style of ADBench's own sources (work arrays
 * malloc'd and freed inside the objective and the cell, the state updated in
 * place), differentiated with __enzyme_autodiff with respect to the main and
 * extra parameters.
 *
 *   lstm INSTANCE GRADIENT    e.g. lstm_l2_c1024.txt lstm_l2_c1024_gradient.txt:
 *                             checks the loss against ADBench's quoted value and
 *                             the gradient against the reference file
 *
 * Built with -DPRIMAL_ONLY (plain clang, no enzpy) only the loss is checked.
 * lstm_gradient is what benchmarks/c_path.py calls through ctypes.
 *
 * Layouts: main_params is 2 l rows of 4 b (per layer a weight row then a bias
 * row, each forget | ingate | outgate | change blocks of b), extra_params 3 rows
 * of b (in weight, out weight, out bias), state 2 l rows of b (per layer hidden
 * then cell), sequence c rows of b. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../enzyme.h"
#include "adbench_io.h"

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ADBench's quirk, kept so that its reference values apply: 2 is added inside the log. */
static double logsumexp(const double *vect, int sz) {
    double sum = 0.0;
    for (int i = 0; i < sz; i++) sum += exp(vect[i]);
    sum += 2;
    return log(sum);
}

/* One layer: each unit is gated by its own input and hidden value (ADBench's
 * model has no weight matrices). Updates hidden and cell in place. */
static void lstm_model(int hsize, const double *weight, const double *bias, double *hidden, double *cell,
                       const double *input) {
    double *gates = (double *)malloc(4 * hsize * sizeof(double));
    double *forget = &gates[0], *ingate = &gates[hsize], *outgate = &gates[2 * hsize],
           *change = &gates[3 * hsize];
    for (int i = 0; i < hsize; i++) {
        forget[i] = sigmoid(input[i] * weight[i] + bias[i]);
        ingate[i] = sigmoid(hidden[i] * weight[hsize + i] + bias[hsize + i]);
        outgate[i] = sigmoid(input[i] * weight[2 * hsize + i] + bias[2 * hsize + i]);
        change[i] = tanh(hidden[i] * weight[3 * hsize + i] + bias[3 * hsize + i]);
    }
    for (int i = 0; i < hsize; i++) cell[i] = cell[i] * forget[i] + ingate[i] * change[i];
    for (int i = 0; i < hsize; i++) hidden[i] = outgate[i] * tanh(cell[i]);
    free(gates);
}

/* The prediction x2 for input x: every layer in turn, each fed the previous one's hidden state. */
static void lstm_predict(int l, int b, const double *w, const double *w2, double *s, const double *x,
                         double *x2) {
    for (int i = 0; i < b; i++) x2[i] = x[i] * w2[i];
    const double *xp = x2;
    for (int i = 0; i <= 2 * l * b - 1; i += 2 * b) {
        lstm_model(b, &w[i * 4], &w[(i + b) * 4], &s[i], &s[i + b], xp);
        xp = &s[i];
    }
    for (int i = 0; i < b; i++) x2[i] = xp[i] * w2[b + i] + w2[2 * b + i];
}

/* `restrict` on what the objective writes (the state, updated in place, and the loss): they overlap
 * no parameter, so the reverse sweep may re-read the parameters instead of taping every load. */
void lstm_objective(int l, int c, int b, const double *main_params, const double *extra_params, double *restrict state,
                    const double *sequence, double *restrict loss) {
    double total = 0.0;
    int count = 0;
    const double *input = &sequence[0];
    double *ypred = (double *)malloc(b * sizeof(double));
    double *ynorm = (double *)malloc(b * sizeof(double));
    for (int t = 0; t <= (c - 1) * b - 1; t += b) {
        lstm_predict(l, b, main_params, extra_params, state, input, ypred);
        double lse = logsumexp(ypred, b);
        for (int i = 0; i < b; i++) ynorm[i] = ypred[i] - lse;
        const double *goal = &sequence[t + b];
        for (int i = 0; i < b; i++) total += goal[i] * ynorm[i];
        count += b;
        input = goal;
    }
    *loss = -total / count;
    free(ypred);
    free(ynorm);
}

/* The state is updated in place: every evaluation starts from a copy of the given one. */
double lstm_primal(int l, int c, int b, const double *main_params, const double *extra_params,
                   const double *state, const double *sequence) {
    double *work = (double *)malloc(2 * l * b * sizeof(double)), loss;
    memcpy(work, state, 2 * l * b * sizeof(double));
    lstm_objective(l, c, b, main_params, extra_params, work, sequence, &loss);
    free(work);
    return loss;
}

#ifndef PRIMAL_ONLY
/* The loss into *loss, its gradient into J: main params (8 l b) then extra
 * params (3 b), ADBench's flat order. The state is written with values that
 * depend on the parameters, so it is duplicated (a shadow of its own), not
 * constant; both start afresh each call. */
void lstm_gradient(int l, int c, int b, const double *main_params, const double *extra_params,
                   const double *state, const double *sequence, double *loss, double *J) {
    size_t state_size = 2 * l * b * sizeof(double);
    double *work = (double *)malloc(state_size), *d_work = (double *)calloc(2 * l * b, sizeof(double));
    memcpy(work, state, state_size);
    memset(J, 0, (size_t)(8 * l * b + 3 * b) * sizeof(double));
    double d_loss = 1.0;
    __enzyme_autodiff((void *)lstm_objective, enzyme_const, l, enzyme_const, c, enzyme_const, b,
                      enzyme_dup, main_params, J, enzyme_dup, extra_params, J + 8 * l * b,
                      enzyme_dup, work, d_work, enzyme_const, sequence, enzyme_dup, loss, &d_loss);
    free(work);
    free(d_work);
}
#endif

/* ADBench's quoted loss for lstm_l2_c1024.txt (see shared/adbench/README.md). */
static const double REFERENCE_LOSS = 0.66666518;

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LSTM_INSTANCE REFERENCE_GRADIENT\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    FILE *file = adbench_open(path);
    int l = adbench_int(file, path), c = adbench_int(file, path), b = adbench_int(file, path);
    double *main_params = adbench_numbers(file, path, 8 * l * b);
    double *extra_params = adbench_numbers(file, path, 3 * b);
    double *state = adbench_numbers(file, path, 2 * l * b);
    double *sequence = adbench_numbers(file, path, c * b);
    fclose(file);
    printf("LSTM %s: l=%d c=%d b=%d\n", path, l, c, b);

    int failures = 0;
    double loss = lstm_primal(l, c, b, main_params, extra_params, state, sequence);
    failures += adbench_compare("loss", 1, &loss, &REFERENCE_LOSS);
#ifndef PRIMAL_ONLY
    int size = 8 * l * b + 3 * b;
    double *reference = adbench_reference(argv[2], size);
    double *J = (double *)malloc(size * sizeof(double)), loss_from_gradient;
    lstm_gradient(l, c, b, main_params, extra_params, state, sequence, &loss_from_gradient, J);
    failures += adbench_compare("loss (gradient call)", 1, &loss_from_gradient, &REFERENCE_LOSS);
    failures += adbench_compare("gradient (main, extra)", size, J, reference);
    free(J);
    free(reference);
#endif
    free(main_params);
    free(extra_params);
    free(state);
    free(sequence);
    return failures ? 1 : 0;
}
