/*
 * kubetrail's one native function: malloc_trim(0), run after the last-resort garbage collection that
 * follows a flood of connections (src/proxy/reclaim.ts). glibc's malloc returns only the top of its heap to
 * the system on its own; what a flood's connections held natively (OpenSSL's objects and record buffers,
 * socket read buffers) is freed between longer-lived chunks and stays resident until malloc_trim gives the
 * free pages back (MADV_DONTNEED). Ruby's GC does the same after a full collection. docs/decisions.md has
 * the figures.
 *
 * trim() returns a promise and runs malloc_trim on libuv's thread pool: over a heap a flood has cut into
 * tens of thousands of free chunks it took 90-460 ms (measured), which the event loop must not wait for.
 * (malloc_trim locks one arena at a time; the main thread's own allocations wait only while the main
 * arena's turn lasts.)
 *
 * Built at install time where there is a C compiler (native/build.sh), never shipped built. It needs no
 * header from Node: Node-API is a stable C ABI, and the functions used here are declared below as Node's
 * js_native_api.h and node_api.h declare them (all of Node-API version 1, every Node since 10). Not glibc
 * (musl, macOS): trim() resolves to false and does nothing; those mallocs return memory on their own.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h> /* also defines __GLIBC__ on glibc */
#if defined(__GLIBC__)
#include <malloc.h>
#endif

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef struct napi_async_work__ *napi_async_work;
typedef struct napi_deferred__ *napi_deferred;
typedef int napi_status; /* napi_ok is 0 */
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
typedef void (*napi_async_execute_callback)(napi_env env, void *data);
typedef void (*napi_async_complete_callback)(napi_env env, napi_status status, void *data);

extern napi_status napi_create_function(napi_env env, const char *utf8name, size_t length, napi_callback cb,
                                        void *data, napi_value *result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char *utf8name,
                                           napi_value value);
extern napi_status napi_get_boolean(napi_env env, bool value, napi_value *result);
extern napi_status napi_create_string_utf8(napi_env env, const char *str, size_t length, napi_value *result);
extern napi_status napi_create_promise(napi_env env, napi_deferred *deferred, napi_value *promise);
extern napi_status napi_resolve_deferred(napi_env env, napi_deferred deferred, napi_value resolution);
extern napi_status napi_create_async_work(napi_env env, napi_value async_resource, napi_value async_resource_name,
                                          napi_async_execute_callback execute, napi_async_complete_callback complete,
                                          void *data, napi_async_work *result);
extern napi_status napi_queue_async_work(napi_env env, napi_async_work work);
extern napi_status napi_delete_async_work(napi_env env, napi_async_work work);

#define NAPI_AUTO_LENGTH ((size_t)-1)
#define EXPORT __attribute__((visibility("default")))

struct job {
  napi_async_work work;
  napi_deferred deferred;
  bool released;
};

/* On a thread-pool thread: no JavaScript here. */
static void run(napi_env env, void *data) {
  (void)env;
  struct job *j = data;
#if defined(__GLIBC__)
  j->released = malloc_trim(0) != 0;
#else
  (void)j;
#endif
}

/* Back on the event loop: settle the promise and free the job. */
static void settle(napi_env env, struct job *j, bool released) {
  napi_value v = NULL;
  napi_get_boolean(env, released, &v);
  napi_resolve_deferred(env, j->deferred, v);
  if (j->work != NULL) napi_delete_async_work(env, j->work);
  free(j);
}

static void complete(napi_env env, napi_status status, void *data) {
  struct job *j = data;
  settle(env, j, status == 0 && j->released);
}

/* trim(): a promise of true when memory was given back to the system, false when there was none (or not glibc). */
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value promise = NULL, name = NULL;
  struct job *j = calloc(1, sizeof *j);
  if (j == NULL) return NULL;
  if (napi_create_promise(env, &j->deferred, &promise) != 0) {
    free(j);
    return NULL;
  }
  if (napi_create_string_utf8(env, "kubetrail.trim", NAPI_AUTO_LENGTH, &name) != 0 ||
      napi_create_async_work(env, NULL, name, run, complete, j, &j->work) != 0) {
    j->work = NULL;
    settle(env, j, false);
  } else if (napi_queue_async_work(env, j->work) != 0) {
    settle(env, j, false);
  }
  return promise;
}

/* Node-API version 1 is all this module uses. */
EXPORT int node_api_module_get_api_version_v1(void) { return 1; }

/* Node calls this when it loads the file (process.dlopen). */
EXPORT napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn = NULL;
  if (napi_create_function(env, "trim", NAPI_AUTO_LENGTH, trim, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != 0) return NULL;
  return exports;
}
