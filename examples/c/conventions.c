/* Spellings of Enzyme's calling convention a program may use besides the plain one:
 *
 * - parameters in a global of named struct type, and a struct initializer in
 *   main (clang makes it a constant global, @__const.main.tuned);
 * - markers passed by address (`&enzyme_dup`), as C++ templates with `int *`
 *   parameters pass them;
 * - __enzyme_autodiff declared to return void with an enzyme_out argument: the
 *   scalar's derivative is dropped and the shadows are still filled;
 * - a global registered inactive (__enzyme_inactive_global): enzpy gives no
 *   global a shadow, so its memory is constant to the derivative, as asked. */
#include "enzyme.h"

#define N 5
typedef struct { double stiffness, damping; } spring_parameters;

spring_parameters spring = {4.0, 0.25};
void *__enzyme_inactive_global = &spring;

void __enzyme_autodiff_void(void *, ...);

/* Energy of a chain of damped springs between positions x[0..n-1], scaled by s. */
double chain_energy(const double *x, double s, int n) {
    double energy = 0.0;
    for (int i = 0; i + 1 < n; i++) {
        double stretch = x[i + 1] - x[i] - 1.0;
        energy += 0.5 * spring.stiffness * stretch * stretch + spring.damping * sin(stretch);
    }
    return s * energy;
}

int main(void) {
    spring_parameters tuned = {3.5, 0.125};          /* a constant global, @__const.main.tuned */
    double x[N] = {0.0, 1.2, 1.9, 3.3, 4.0}, dx[N] = {0}, dx_void[N] = {0}, h = 1e-6, s = 1.5;
    int failures = 0;
    spring = tuned;                                  /* the derivative reads the global as the program set it */

    double ds = __enzyme_autodiff((void *)chain_energy, &enzyme_dup, x, dx, &enzyme_out, s, &enzyme_const, N);
    failures += check_close("d energy / d s (markers by address)", ds,
                            (chain_energy(x, s + h, N) - chain_energy(x, s - h, N)) / (2 * h), 1e-6);
    __enzyme_autodiff_void((void *)chain_energy, enzyme_dup, x, dx_void, enzyme_out, s, enzyme_const, N);
    for (int i = 0; i < N; i++) {
        double saved = x[i];
        x[i] = saved + h; double plus = chain_energy(x, s, N);
        x[i] = saved - h; double minus = chain_energy(x, s, N);
        x[i] = saved;
        failures += check_close("d energy / d x[i]", dx[i], (plus - minus) / (2 * h), 1e-6);
        failures += check_close("d energy / d x[i] (void, enzyme_out dropped)", dx_void[i], dx[i], 1e-15);
    }
    return failures;
}
