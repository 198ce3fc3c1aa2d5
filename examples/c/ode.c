/* A damped, driven oscillator integrated with classical Runge-Kutta: the
 * derivatives of the final energy with respect to the initial state (an
 * array) and the two physical parameters (returned as a struct), and the
 * forward-mode sensitivity to the stiffness, against central differences. */
#include "enzyme.h"

#define STEPS 200

static void rates(const double *state, double time, double stiffness, double damping, double *out) {
    out[0] = state[1];
    out[1] = -stiffness * state[0] - damping * state[1] + 0.3 * sin(1.3 * time);
}

/* Integrate `state` (position, velocity) in place; return the final energy. */
double simulate(double *state, int steps, double stiffness, double damping) {
    double dt = 0.05, k1[2], k2[2], k3[2], k4[2], stage[2];
    for (int step = 0; step < steps; step++) {
        double time = step * dt;
        rates(state, time, stiffness, damping, k1);
        for (int j = 0; j < 2; j++) stage[j] = state[j] + 0.5 * dt * k1[j];
        rates(stage, time + 0.5 * dt, stiffness, damping, k2);
        for (int j = 0; j < 2; j++) stage[j] = state[j] + 0.5 * dt * k2[j];
        rates(stage, time + 0.5 * dt, stiffness, damping, k3);
        for (int j = 0; j < 2; j++) stage[j] = state[j] + dt * k3[j];
        rates(stage, time + dt, stiffness, damping, k4);
        for (int j = 0; j < 2; j++) state[j] += dt / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
    }
    return 0.5 * state[1] * state[1] + 0.5 * stiffness * state[0] * state[0];
}

static double energy_from(double position, double velocity, double stiffness, double damping) {
    double state[2] = {position, velocity};
    return simulate(state, STEPS, stiffness, damping);
}

int main(void) {
    const double position = 1.0, velocity = -0.5, stiffness = 2.0, damping = 0.15, h = 1e-6;
    int failures = 0;

    double state[2] = {position, velocity}, dstate[2] = {0, 0};
    derivative_pair dparameters = __enzyme_autodiff_pair((void *)simulate, enzyme_dup, state, dstate,
                                                         enzyme_const, STEPS, stiffness, damping);
    failures += check_close("reverse d energy / d position", dstate[0],
                            (energy_from(position + h, velocity, stiffness, damping)
                             - energy_from(position - h, velocity, stiffness, damping)) / (2 * h), 1e-6);
    failures += check_close("reverse d energy / d velocity", dstate[1],
                            (energy_from(position, velocity + h, stiffness, damping)
                             - energy_from(position, velocity - h, stiffness, damping)) / (2 * h), 1e-6);
    double by_stiffness = (energy_from(position, velocity, stiffness + h, damping)
                           - energy_from(position, velocity, stiffness - h, damping)) / (2 * h);
    failures += check_close("reverse d energy / d stiffness", dparameters.first, by_stiffness, 1e-6);
    failures += check_close("reverse d energy / d damping", dparameters.second,
                            (energy_from(position, velocity, stiffness, damping + h)
                             - energy_from(position, velocity, stiffness, damping - h)) / (2 * h), 1e-6);

    double forward_state[2] = {position, velocity}, tangent_state[2] = {0, 0};
    double sensitivity = __enzyme_fwddiff((void *)simulate, enzyme_dup, forward_state, tangent_state,
                                          enzyme_const, STEPS, stiffness, 1.0, enzyme_const, damping);
    failures += check_close("forward d energy / d stiffness", sensitivity, by_stiffness, 1e-6);
    printf("%s\n", failures ? "FAILED" : "all derivatives agree");
    return failures != 0;
}
