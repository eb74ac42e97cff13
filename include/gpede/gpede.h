/*
 * gpede's C API: the solver for C, Fortran (ISO_C_BINDING) and ctypes callers, in the shared
 * library libgpede_c (soname libgpede_c.so.0). Opaque handles; every call returns a status, and
 * the message of the last failed call of the calling thread is gpede_last_error(). No C++
 * exception crosses this interface.
 *
 * A run: read a steering file (gpede_steering_read), optionally build records in memory
 * (gpede_records_*, Mille's calls), solve (gpede_solve), read the results (gpede_result_*) and
 * write pede's result files (gpede_result_write). Free every handle with its _free call.
 */
#ifndef GPEDE_GPEDE_H
#define GPEDE_GPEDE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GPEDE_C_API __attribute__((visibility("default")))
#else
#define GPEDE_C_API
#endif

/** Incremented when a call or a struct of this header changes incompatibly. */
#define GPEDE_C_API_VERSION 2

typedef enum gpede_status {
  GPEDE_OK = 0,
  GPEDE_ERROR_INPUT = 1,       /* bad steering, binary file, record or argument: the message says which */
  GPEDE_ERROR_RUNTIME = 2,     /* memory, device, files that cannot be written */
  GPEDE_ERROR_INTERRUPTED = 3, /* the log callback asked the run to stop */
  GPEDE_ERROR_INTERNAL = 4     /* a fault of gpede itself */
} gpede_status;

typedef struct gpede_steering gpede_steering;
typedef struct gpede_records gpede_records;
typedef struct gpede_result gpede_result;

/** gpede's version, "MAJOR.MINOR.PATCH". */
GPEDE_C_API const char* gpede_version(void);
/** GPEDE_C_API_VERSION of the library (compare with the header's). */
GPEDE_C_API int gpede_c_api_version(void);
/** The message of the calling thread's last failed call ("" after a successful one). */
GPEDE_C_API const char* gpede_last_error(void);

/* ---- steering ---------------------------------------------------------------------------- */

/** Reads a pede steering file (and the text files it names). */
GPEDE_C_API gpede_status gpede_steering_read(const char* path, gpede_steering** steering);
GPEDE_C_API void gpede_steering_free(gpede_steering* steering);
/** The steering's warnings (keywords pede knows that gpede does not implement, and the like). */
GPEDE_C_API size_t gpede_steering_warning_count(const gpede_steering* steering);
GPEDE_C_API const char* gpede_steering_warning(const gpede_steering* steering, size_t index);

/* ---- records in memory (Mille's calls) --------------------------------------------------- */

GPEDE_C_API gpede_status gpede_records_new(gpede_records** records);
GPEDE_C_API void gpede_records_free(gpede_records* records);
/**
 * Adds a measurement to the current record, as Mille::mille does: n_local local derivatives
 * (local parameter k + 1 for local_derivatives[k]), n_global global derivatives with their labels
 * (1 to 2^31 - 1), the measured residual and its error (sigma > 0). Zero derivatives are left out.
 * A bad value is refused with GPEDE_ERROR_INPUT naming the record and the measurement; the record
 * is then discarded whole.
 */
GPEDE_C_API gpede_status gpede_records_add_measurement(gpede_records* records, int n_local,
                                                       const double* local_derivatives, int n_global,
                                                       const double* global_derivatives,
                                                       const int32_t* labels, double measurement,
                                                       double sigma);
/** Ends the current record (Mille::end); a record without measurements is refused. */
GPEDE_C_API gpede_status gpede_records_end(gpede_records* records);
/** Discards the current record (Mille::kill). */
GPEDE_C_API void gpede_records_kill(gpede_records* records);
/** Records ended so far. */
GPEDE_C_API size_t gpede_records_count(const gpede_records* records);

/* ---- solving ----------------------------------------------------------------------------- */

typedef enum gpede_backend { GPEDE_BACKEND_CPU = 0, GPEDE_BACKEND_CUDA = 1, GPEDE_BACKEND_AUTO = 2 } gpede_backend;

/**
 * Receives each line of the run's log (millepede.log's lines as they happen); a non-zero return
 * asks the run to stop, and gpede_solve then returns GPEDE_ERROR_INTERRUPTED.
 */
typedef int (*gpede_log_function)(const char* line, void* user);

/** Where a run stands (gpede::Progress): phase 0 reading, 1 local fits, 2 matrix, 3 solving. */
typedef struct gpede_progress {
  int phase;
  const char* phase_name;
  int iteration;
  int64_t records_done;
  int64_t records_total; /* -1 where not known */
  double seconds;        /* since the phase began */
  double records_per_second;
  double seconds_left;   /* estimated; -1 where not known */
  int finished;          /* the phase's last call */
} gpede_progress;

/**
 * Receives the run's progress about once a second during reading and passes over the records,
 * and at the end of each phase; a non-zero return stops the run (GPEDE_ERROR_INTERRUPTED).
 */
typedef int (*gpede_progress_function)(const gpede_progress* progress, void* user);

typedef struct gpede_options {
  int backend;           /* a gpede_backend: GPEDE_BACKEND_CPU by default */
  int threads;           /* 0: the steering's `threads`, else all cores */
  int deterministic;     /* non-zero: the same results bit for bit, run after run */
  int cache_records;     /* non-zero (default): keep the records read in memory between passes */
  gpede_log_function log;
  void* log_user;
  /* The covariance block to bring back (gpede_result_covariance): these labels, in this order
   * (fixed ones and ones not in the run are left out, with a warning in the log), or with
   * covariance_all non-zero every variable parameter. With the MINRES methods each column is one
   * more MINRES solution. */
  const int32_t* covariance_labels;
  size_t n_covariance_labels;
  int covariance_all;
  gpede_progress_function progress;
  void* progress_user;
} gpede_options;

/** The defaults (those of the command line). */
GPEDE_C_API gpede_options gpede_options_default(void);

/**
 * Solves: records from `records` if it is not NULL (its ended records; the steering's binary
 * files are then not read), else from the steering's binary files. options may be NULL (the
 * defaults). A numerical outcome such as a matrix that is not positive definite is a result with
 * gpede_result_exit_code() >= 10, not a failed call.
 */
GPEDE_C_API gpede_status gpede_solve(const gpede_steering* steering, const gpede_options* options,
                                     const gpede_records* records, gpede_result** result);
GPEDE_C_API void gpede_result_free(gpede_result* result);

/* ---- results ----------------------------------------------------------------------------- */

/** One label's result, in millepede.res terms. error and global_correlation are NaN where the
 *  method gives none. */
typedef struct gpede_parameter {
  int32_t label;
  int variable;     /* non-zero: fitted */
  int fixed_by;     /* 0 fitted, -1 by its pre-sigma, -2 by the entries cut, -3 by the iterated cut */
  double value;     /* start value + correction */
  double presigma;
  double difference;
  double error;
  double global_correlation;
  int64_t entries;  /* measurements with this label in the binary files or records */
} gpede_parameter;

/** pede's millepede.end code (0 to 4: solved; 10 and above: failed) and message. */
GPEDE_C_API int gpede_result_exit_code(const gpede_result* result);
GPEDE_C_API const char* gpede_result_message(const gpede_result* result);
GPEDE_C_API double gpede_result_chi2_ndf(const gpede_result* result);
GPEDE_C_API int64_t gpede_result_records_used(const gpede_result* result);
GPEDE_C_API int64_t gpede_result_records_rejected(const gpede_result* result);
/** Every label of the run, ascending. */
GPEDE_C_API size_t gpede_result_parameter_count(const gpede_result* result);
GPEDE_C_API gpede_status gpede_result_parameter(const gpede_result* result, size_t index,
                                                gpede_parameter* parameter);
/** The result of `label`; GPEDE_ERROR_INPUT if the run has no such label. */
GPEDE_C_API gpede_status gpede_result_find(const gpede_result* result, int32_t label,
                                           gpede_parameter* parameter);
/** Rows (and columns) of the covariance block asked for in gpede_options; 0 if none. */
GPEDE_C_API size_t gpede_result_covariance_size(const gpede_result* result);
/**
 * Copies the covariance block: its labels (size k = gpede_result_covariance_size) and the k x k
 * matrix, row-major. Either pointer may be NULL to leave that part out.
 */
GPEDE_C_API gpede_status gpede_result_covariance(const gpede_result* result, int32_t* labels, double* matrix);

/**
 * Writes pede's result files into `folder` as the command line does (millepede.res, .log, .end,
 * gpede.json; millepede.eve for diagonalization), whole or not at all.
 */
GPEDE_C_API gpede_status gpede_result_write(gpede_result* result, const gpede_steering* steering,
                                            const char* folder);

#ifdef __cplusplus
}
#endif

#endif /* GPEDE_GPEDE_H */
