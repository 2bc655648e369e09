/*
 * A fake NVML (libnvidia-ml.so.1) for the agent's GPU tests: built by the tests with
 * `gcc -shared -fPIC` and loaded through GANTRY_NVML_LIBRARY, so GPU detection runs end to end
 * on hosts without a GPU.
 *
 * nvml-wrapper resolves every symbol of its table when it loads the library but keeps a missing
 * one as an error that surfaces only when that function is called (nvmlShutdown excepted: its
 * Drop calls it unchecked). So this file exports only what gantry calls: init, shutdown, the
 * driver version (read at init), the device count, and per device its handle, index, uuid, name,
 * memory and minor number.
 *
 * Configuration, read at each init (environment first, then the -D default built in):
 *   FAKE_NVML_GPUS        a count ("2") or comma-separated names ("NVIDIA A100,NVIDIA H100");
 *                         default FAKE_NVML_DEFAULT_GPUS, else "0"
 *   FAKE_NVML_INIT_ERROR  an nvmlReturn_t for init to fail with (9: driver not loaded);
 *                         default FAKE_NVML_DEFAULT_INIT_ERROR, else 0
 * Device i has uuid GPU-fa4e0000-0000-4000-8000-00000000000<i>, minor number i and
 * (16 + i) GiB of memory; a count gives it the name "NVIDIA Fake GPU".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_NVML_DEFAULT_GPUS
#define FAKE_NVML_DEFAULT_GPUS "0"
#endif
#ifndef FAKE_NVML_DEFAULT_INIT_ERROR
#define FAKE_NVML_DEFAULT_INIT_ERROR 0
#endif

#define MAX_DEVICES 16
#define NAME_SIZE 96

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
};

struct nvmlDevice_st {
    unsigned int index;
    char name[NAME_SIZE];
};
typedef struct nvmlDevice_st *nvmlDevice_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

static struct nvmlDevice_st devices[MAX_DEVICES];
static unsigned int device_count;
static int initialized;

static const char *setting(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

static nvmlReturn_t fake_init(void) {
    char fallback[16];
    snprintf(fallback, sizeof fallback, "%d", FAKE_NVML_DEFAULT_INIT_ERROR);
    nvmlReturn_t error = atoi(setting("FAKE_NVML_INIT_ERROR", fallback));
    if (error != NVML_SUCCESS)
        return error;

    const char *gpus = setting("FAKE_NVML_GPUS", FAKE_NVML_DEFAULT_GPUS);
    char *end;
    long count = strtol(gpus, &end, 10);
    device_count = 0;
    if (*end == '\0') {
        for (long i = 0; i < count && i < MAX_DEVICES; i++) {
            devices[i].index = (unsigned int)i;
            snprintf(devices[i].name, NAME_SIZE, "NVIDIA Fake GPU");
            device_count++;
        }
    } else {
        const char *name = gpus;
        while (device_count < MAX_DEVICES) {
            size_t length = strcspn(name, ",");
            devices[device_count].index = device_count;
            snprintf(devices[device_count].name, NAME_SIZE, "%.*s", (int)length, name);
            device_count++;
            if (name[length] == '\0')
                break;
            name += length + 1;
        }
    }
    initialized++;
    return NVML_SUCCESS;
}

static nvmlReturn_t check(nvmlDevice_t device) {
    if (!initialized)
        return NVML_ERROR_UNINITIALIZED;
    if (device < devices || device >= devices + device_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

static nvmlReturn_t copy(const char *value, char *buffer, unsigned int length) {
    if (!buffer)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(buffer, value);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) { return fake_init(); }

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return fake_init();
}

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized)
        return NVML_ERROR_UNINITIALIZED;
    initialized--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case 9: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    return copy("550.54.15", version, length);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized)
        return NVML_ERROR_UNINITIALIZED;
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = device_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialized)
        return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= device_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS || !index)
        return result != NVML_SUCCESS ? result : NVML_ERROR_INVALID_ARGUMENT;
    *index = device->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS)
        return result;
    char value[64];
    snprintf(value, sizeof value, "GPU-fa4e0000-0000-4000-8000-%012u", device->index);
    return copy(value, uuid, length);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS)
        return result;
    return copy(device->name, name, length);
}

static unsigned long long memory_total(nvmlDevice_t device) {
    return (16ULL + device->index) << 30;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS || !memory)
        return result != NVML_SUCCESS ? result : NVML_ERROR_INVALID_ARGUMENT;
    memory->total = memory_total(device);
    memory->free = memory->total;
    memory->used = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS || !memory)
        return result != NVML_SUCCESS ? result : NVML_ERROR_INVALID_ARGUMENT;
    memory->total = memory_total(device);
    memory->reserved = 0;
    memory->free = memory->total;
    memory->used = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS || !minor)
        return result != NVML_SUCCESS ? result : NVML_ERROR_INVALID_ARGUMENT;
    *minor = device->index;
    return NVML_SUCCESS;
}
