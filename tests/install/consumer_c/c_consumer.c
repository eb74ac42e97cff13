/*
 * Solves a problem through an installed gpede's C API and compares the values and errors with a
 * millepede.res written by pede.
 *   c_consumer STEERING PEDE_RES
 * Exit status 0 when every parameter agrees (value within 1 % of its error or half a unit of pede's
 * last printed digit; error within 1e-3 relative), 1 when not, 2 on a usage or gpede error.
 */
#include <gpede/gpede.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  gpede_steering* steering = NULL;
  gpede_result* result = NULL;
  gpede_options options = gpede_options_default();
  FILE* res = NULL;
  char line[512];
  size_t compared = 0;
  int bad = 0;
  if (argc != 3) {
    fprintf(stderr, "usage: c_consumer STEERING PEDE_RES\n");
    return 2;
  }
  if (gpede_c_api_version() != GPEDE_C_API_VERSION) {
    fprintf(stderr, "header for C API %d, library of %d\n", GPEDE_C_API_VERSION, gpede_c_api_version());
    return 1;
  }
  if (gpede_steering_read(argv[1], &steering) != GPEDE_OK ||
      gpede_solve(steering, &options, NULL, &result) != GPEDE_OK) {
    fprintf(stderr, "gpede: %s\n", gpede_last_error());
    gpede_steering_free(steering);
    return 2;
  }
  if (gpede_result_exit_code(result) > 4) {  /* 1 to 4: solved, with pede's warnings */
    fprintf(stderr, "gpede: %s\n", gpede_result_message(result));
    bad = 1;
  }
  res = fopen(argv[2], "r");
  if (res == NULL || fgets(line, sizeof line, res) == NULL) {
    fprintf(stderr, "cannot read %s\n", argv[2]);
    return 2;
  }
  while (fgets(line, sizeof line, res) != NULL) {
    int label = 0;
    double value = 0.0, presigma = 0.0, difference = 0.0, error = 0.0;
    gpede_parameter p;
    if (sscanf(line, "%d %lf %lf %lf %lf", &label, &value, &presigma, &difference, &error) != 5) continue;
    if (gpede_result_find(result, label, &p) != GPEDE_OK) {
      printf("label %d: %s\n", label, gpede_last_error());
      ++bad;
      continue;
    }
    ++compared;
    if (fabs(p.value - value) > fmax(0.01 * error, 5e-5 * fabs(value)) + 1e-12 ||
        fabs(p.error - error) > 1.05e-3 * error) {
      printf("label %d: gpede %.6g +- %.6g, pede %.6g +- %.6g\n", label, p.value, p.error, value, error);
      ++bad;
    }
  }
  fclose(res);
  printf("gpede %s through its C API: %zu parameters compared with pede, %d differ; chi2/ndf %.6f, "
         "exit code %d\n", gpede_version(), compared, bad, gpede_result_chi2_ndf(result),
         gpede_result_exit_code(result));
  gpede_result_free(result);
  gpede_steering_free(steering);
  return bad == 0 && compared > 0 ? 0 : 1;
}
