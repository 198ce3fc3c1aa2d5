/* Enzyme's split reverse mode: the forward sweep and the reverse sweep as two calls.
 *
 * __enzyme_augmentfwd runs the function and keeps what its reverse sweep
 * needs in a tape; __enzyme_reverse, given the same arguments (and the
 * result's differential), adds the derivatives into the shadows and frees the
 * tape. A program uses it to interleave its own work between the sweeps, for
 * example to reverse a time loop step by step:
 *
 * - an in-place stepper, a tape per step kept in an array, the steps reversed
 *   in reverse order: equal to the combined gradient of the whole loop;
 * - a scalar-valued function with tape memory the program owns
 *   (enzyme_allocated, sized by __enzyme_augmentsize), the result's
 *   differential passed to the reverse call, an enzyme_out scalar returned;
 * - an augmented call returning the tape and the function's result together. */
#include <stdlib.h>
#include "enzyme.h"

#define N 4
#define STEPS 5

extern int enzyme_allocated, enzyme_tape;
void *__enzyme_augmentfwd(void *, ...);
void __enzyme_augmentfwd_into(void *, ...);
void __enzyme_reverse(void *, ...);
double __enzyme_reverse_scalar(void *, ...);
int __enzyme_augmentsize(void *, ...);

typedef struct { void *tape; double value; } tape_and_value;
tape_and_value __enzyme_augmentfwd_value(void *, ...);

/* One explicit step of a nonlinear oscillator chain, in place. */
void step(double *x, const double *k, int n) {
    double previous = x[n - 1];
    for (int i = 0; i < n; i++) {
        double current = x[i];
        x[i] = current + 0.1 * k[i] * sin(previous - current);
        previous = current;
    }
}

double run_and_measure(double *x, const double *k, int n) {
    for (int s = 0; s < STEPS; s++)
        step(x, k, n);
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += x[i] * x[i];
    return total;
}

double weighted_energy(const double *x, double s, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += s * x[i] * x[i] * x[i] + cos(s * x[i]);
    return total;
}

int main(void) {
    double k[N] = {1.0, 0.5, 2.0, 1.5}, dk[N] = {0}, dk_combined[N] = {0};
    double x[N] = {0.3, -0.2, 0.8, 0.1}, dx[N], x_combined[N], dx_combined[N] = {0};
    int failures = 0;
    for (int i = 0; i < N; i++) x_combined[i] = x[i];

    /* The time loop, one tape per step, then the steps reversed in reverse order. */
    void *tapes[STEPS];
    for (int s = 0; s < STEPS; s++)
        tapes[s] = __enzyme_augmentfwd((void *)step, enzyme_dup, x, dx, enzyme_dup, k, dk, enzyme_const, N);
    for (int i = 0; i < N; i++) dx[i] = 2.0 * x[i];             /* d(sum x^2) / dx at the end */
    for (int s = STEPS - 1; s >= 0; s--)
        __enzyme_reverse((void *)step, enzyme_dup, x, dx, enzyme_dup, k, dk, enzyme_const, N, tapes[s]);
    __enzyme_autodiff((void *)run_and_measure, enzyme_dup, x_combined, dx_combined, enzyme_dup, k, dk_combined,
                      enzyme_const, N);
    for (int i = 0; i < N; i++) {
        failures += check_close("d sum(x^2) / d x0[i], split mode step by step", dx[i], dx_combined[i], 1e-12);
        failures += check_close("d sum(x^2) / d k[i], split mode step by step", dk[i], dk_combined[i], 1e-12);
    }

    /* Tape memory the program owns; the result's differential 2.0 passed to the reverse call. */
    double y[3] = {0.5, -1.0, 2.0}, dy[3] = {0}, s = 1.5, h = 1e-6;
    int size = __enzyme_augmentsize((void *)weighted_energy, enzyme_dup, enzyme_out, enzyme_const);
    void *buffer = malloc(size);
    __enzyme_augmentfwd_into((void *)weighted_energy, enzyme_allocated, size, enzyme_tape, buffer,
                             enzyme_dup, y, dy, enzyme_out, s, enzyme_const, 3);
    double ds = __enzyme_reverse_scalar((void *)weighted_energy, enzyme_allocated, size, enzyme_tape, buffer,
                                        enzyme_dup, y, dy, enzyme_out, s, enzyme_const, 3, 2.0);
    free(buffer);
    failures += check_close("2 d energy / d s, tape the program owns", ds,
                            2.0 * (weighted_energy(y, s + h, 3) - weighted_energy(y, s - h, 3)) / (2 * h), 1e-6);
    for (int i = 0; i < 3; i++)
        failures += check_close("2 d energy / d y[i]", dy[i], 2.0 * (3 * s * y[i] * y[i] - s * sin(s * y[i])),
                                1e-12);

    /* The tape and the result from one augmented call. */
    double dy2[3] = {0};
    tape_and_value both = __enzyme_augmentfwd_value((void *)weighted_energy, enzyme_dup, y, dy2, enzyme_out, s,
                                                    enzyme_const, 3);
    failures += check_close("the augmented call's result", both.value, weighted_energy(y, s, 3), 1e-15);
    double ds2 = __enzyme_reverse_scalar((void *)weighted_energy, enzyme_dup, y, dy2, enzyme_out, s,
                                         enzyme_const, 3, 1.0, both.tape);
    failures += check_close("d energy / d s, tape returned with the result", 2.0 * ds2, ds, 1e-14);
    return failures;
}
