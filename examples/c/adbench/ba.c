/* ADBench's bundle adjustment in the C style of ADBench's own sources, with
 * the sparse Jacobian computed as Enzyme's ADBench port does: per observation,
 * one __enzyme_autodiff (reverse) call per output row of compute_reproj_error
 * (a 2 x 15 block: 11 camera, 3 point, 1 weight columns), and one per weight
 * error (its diagonal entry).
 *
 *   ba INSTANCE JACOBIAN    e.g. ba_test.txt ba_test_jacobian_values.txt:
 *                           checks the residuals against ADBench's quoted values
 *                           and the Jacobian's non-zeros against the reference
 *
 * Built with -DPRIMAL_ONLY (plain clang, no enzpy) only the residuals are checked.
 * ba_jacobian is what benchmarks/c_path.py calls through ctypes.
 *
 * A camera is 11 numbers: Rodrigues rotation 3, centre 3, focal length 1,
 * principal point 2, radial distortion 2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../enzyme.h"
#include "adbench_io.h"

#define BA_NCAMPARAMS 11
#define BA_BLOCK (BA_NCAMPARAMS + 3 + 1)

static double sqsum(int n, const double *x) {
    double res = 0.0;
    for (int i = 0; i < n; i++) res += x[i] * x[i];
    return res;
}

static void cross(const double *a, const double *b, double *out) {
    out[0] = a[1] * b[2] - a[2] * b[1];
    out[1] = a[2] * b[0] - a[0] * b[2];
    out[2] = a[0] * b[1] - a[1] * b[0];
}

/* Rodrigues' formula; at angle 0 its first-order form, which has the right
 * derivative there where the exact formula divides by zero. */
static void rodrigues_rotate_point(const double *rot, const double *pt, double *rotatedPt) {
    double sqtheta = sqsum(3, rot);
    if (sqtheta != 0) {
        double theta = sqrt(sqtheta), costheta = cos(theta), sintheta = sin(theta);
        double theta_inverse = 1.0 / theta;
        double w[3], w_cross_pt[3];
        for (int i = 0; i < 3; i++) w[i] = rot[i] * theta_inverse;
        cross(w, pt, w_cross_pt);
        double tmp = (w[0] * pt[0] + w[1] * pt[1] + w[2] * pt[2]) * (1.0 - costheta);
        for (int i = 0; i < 3; i++) rotatedPt[i] = pt[i] * costheta + w_cross_pt[i] * sintheta + w[i] * tmp;
    } else {
        double rot_cross_pt[3];
        cross(rot, pt, rot_cross_pt);
        for (int i = 0; i < 3; i++) rotatedPt[i] = pt[i] + rot_cross_pt[i];
    }
}

static void radial_distort(const double *rad_params, double *proj) {
    double rsq = sqsum(2, proj);
    double L = 1.0 + rad_params[0] * rsq + rad_params[1] * rsq * rsq;
    proj[0] *= L;
    proj[1] *= L;
}

static void project(const double *cam, const double *X, double *proj) {
    const double *C = &cam[3];
    double Xo[3], Xcam[3];
    for (int i = 0; i < 3; i++) Xo[i] = X[i] - C[i];
    rodrigues_rotate_point(&cam[0], Xo, Xcam);
    proj[0] = Xcam[0] / Xcam[2];
    proj[1] = Xcam[1] / Xcam[2];
    radial_distort(&cam[9], proj);
    proj[0] = proj[0] * cam[6] + cam[7];
    proj[1] = proj[1] * cam[6] + cam[8];
}

void compute_reproj_error(const double *cam, const double *X, const double *w, const double *feat, double *err) {
    double proj[2];
    project(cam, X, proj);
    err[0] = (*w) * (proj[0] - feat[0]);
    err[1] = (*w) * (proj[1] - feat[1]);
}

void compute_zach_weight_error(const double *w, double *err) { *err = 1.0 - (*w) * (*w); }

/* obs holds (camera, point) per observation. */
void ba_objective(int n, int m, int p, const double *cams, const double *X, const double *w, const int *obs,
                  const double *feats, double *reproj_err, double *w_err) {
    (void)n, (void)m;
    for (int i = 0; i < p; i++)
        compute_reproj_error(&cams[obs[2 * i] * BA_NCAMPARAMS], &X[obs[2 * i + 1] * 3], &w[i], &feats[2 * i],
                             &reproj_err[2 * i]);
    for (int i = 0; i < p; i++) compute_zach_weight_error(&w[i], &w_err[i]);
}

#ifndef PRIMAL_ONLY
/* The residuals, and J: ADBench's non-zeros row by row, i.e. per observation
 * its two 15-entry reprojection rows (30 p values), then the p weight-error
 * diagonal entries. Each row is one reverse sweep seeded with a unit vector;
 * the camera and point shadows are local, so no observation's row sees
 * another's (the block stays per observation, as ADBench stores it). */
void ba_jacobian(int n, int m, int p, const double *cams, const double *X, const double *w, const int *obs,
                 const double *feats, double *reproj_err, double *w_err, double *J) {
    (void)n, (void)m;
    for (int i = 0; i < p; i++) {
        const double *cam = &cams[obs[2 * i] * BA_NCAMPARAMS], *point = &X[obs[2 * i + 1] * 3];
        for (int row = 0; row < 2; row++) {
            double *block = &J[(2 * i + row) * BA_BLOCK];
            double d_err[2] = {row == 0, row == 1};
            memset(block, 0, BA_BLOCK * sizeof(double));
            __enzyme_autodiff((void *)compute_reproj_error, enzyme_dup, cam, block, enzyme_dup, point,
                              block + BA_NCAMPARAMS, enzyme_dup, &w[i], block + BA_NCAMPARAMS + 3,
                              enzyme_const, &feats[2 * i], enzyme_dup, &reproj_err[2 * i], d_err);
        }
    }
    double *diagonal = &J[2 * p * BA_BLOCK];
    for (int i = 0; i < p; i++) {
        double d_err = 1.0;
        diagonal[i] = 0.0;
        __enzyme_autodiff((void *)compute_zach_weight_error, enzyme_dup, &w[i], &diagonal[i], enzyme_dup,
                          &w_err[i], &d_err);
    }
}
#endif

/* ADBench's quoted residuals for ba_test.txt (see shared/adbench/README.md). */
static const double REFERENCE_REPROJECTION[2] = {-0.269048849235189402, 0.259944792677901881};
static const double REFERENCE_WEIGHT_ERROR = 0.826092651515999976;

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s BA_INSTANCE REFERENCE_JACOBIAN\n", argv[0]);
        return 2;
    }
    /* One camera, point, weight and feature, replicated as ADBench does:
     * observation i sees camera i % n and point i % m. */
    const char *path = argv[1];
    FILE *file = adbench_open(path);
    int n = adbench_int(file, path), m = adbench_int(file, path), p = adbench_int(file, path);
    double *cams = (double *)malloc(n * BA_NCAMPARAMS * sizeof(double));
    double *X = (double *)malloc(m * 3 * sizeof(double));
    double *w = (double *)malloc(p * sizeof(double)), *feats = (double *)malloc(2 * p * sizeof(double));
    int *obs = (int *)malloc(2 * p * sizeof(int));
    for (int i = 0; i < BA_NCAMPARAMS; i++) cams[i] = adbench_number(file, path);
    for (int i = 0; i < 3; i++) X[i] = adbench_number(file, path);
    w[0] = adbench_number(file, path);
    feats[0] = adbench_number(file, path);
    feats[1] = adbench_number(file, path);
    fclose(file);
    for (int i = 1; i < n; i++) memcpy(&cams[i * BA_NCAMPARAMS], cams, BA_NCAMPARAMS * sizeof(double));
    for (int i = 1; i < m; i++) memcpy(&X[i * 3], X, 3 * sizeof(double));
    for (int i = 0; i < p; i++) {
        w[i] = w[0];
        feats[2 * i] = feats[0];
        feats[2 * i + 1] = feats[1];
        obs[2 * i] = i % n;
        obs[2 * i + 1] = i % m;
    }
    printf("BA %s: n=%d m=%d p=%d\n", path, n, m, p);

    int failures = 0;
    double *reproj_err = (double *)malloc(2 * p * sizeof(double)), *w_err = (double *)malloc(p * sizeof(double));
    double *expected = (double *)malloc(2 * p * sizeof(double));
    for (int i = 0; i < 2 * p; i++) expected[i] = REFERENCE_REPROJECTION[i % 2];
    ba_objective(n, m, p, cams, X, w, obs, feats, reproj_err, w_err);
    failures += adbench_compare("reprojection residuals", 2 * p, reproj_err, expected);
    for (int i = 0; i < p; i++) expected[i] = REFERENCE_WEIGHT_ERROR;
    failures += adbench_compare("weight residuals", p, w_err, expected);
#ifndef PRIMAL_ONLY
    int size = 2 * p * BA_BLOCK + p;
    double *reference = adbench_reference(argv[2], size), *J = (double *)malloc(size * sizeof(double));
    for (int i = 0; i < 2 * p; i++) reproj_err[i] = 0.0;
    ba_jacobian(n, m, p, cams, X, w, obs, feats, reproj_err, w_err, J);
    for (int i = 0; i < 2 * p; i++) expected[i] = REFERENCE_REPROJECTION[i % 2];
    failures += adbench_compare("reprojection (Jacobian call)", 2 * p, reproj_err, expected);
    failures += adbench_compare("Jacobian non-zeros", size, J, reference);
    free(J);
    free(reference);
#endif
    free(cams);
    free(X);
    free(w);
    free(feats);
    free(obs);
    free(reproj_err);
    free(w_err);
    free(expected);
    return failures ? 1 : 0;
}
