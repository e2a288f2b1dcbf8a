// gpuenhance CUDA emulator runtime: worker threads, launches, block barriers.
//
// Compiled once (per compiler and flags) into its own shared object, so that kernel modules
// need no heavy standard headers. Exposes gpuenhance_emu_runtime_api() (see emu_api.h).
//
// Model: a launch with T = blockDim.x*y*z threads runs on T pooled OS threads (started once,
// parked between launches). Each walks all blocks in order; a barrier separates blocks.
// __syncthreads is a generation barrier on a futex; a thread that returned from the kernel
// counts as arrived at every later barrier of its block. Launches are serialized process-wide.
#include "emu_api.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, double max_s) {
#ifdef __linux__
    struct timespec ts;
    ts.tv_sec = (time_t)max_s;
    ts.tv_nsec = (long)((max_s - (double)ts.tv_sec) * 1e9);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
#else
    (void)word;
    (void)expected;
    (void)max_s;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
#endif
}

void futex_wake_all(std::atomic<uint32_t>* word) {
#ifdef __linux__
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
#else
    (void)word;
#endif
}

// Wait until *word != old; false on timeout (timeout_s <= 0: no timeout).
bool wait_change(std::atomic<uint32_t>& word, uint32_t old, double timeout_s) {
    const auto start = Clock::now();
    while (word.load(std::memory_order_acquire) == old) {
        double left = 60.0;  // idle workers: wake rarely
        if (timeout_s > 0) {
            left = timeout_s - std::chrono::duration<double>(Clock::now() - start).count();
            if (left <= 0) return word.load(std::memory_order_acquire) != old;
            if (left > 0.5) left = 0.5;  // re-check the clock periodically
        }
        futex_wait(&word, old, left);
    }
    return true;
}

struct Launch {
    gpuenhance_emu_block_fn fn = nullptr;
    void* ctx = nullptr;
    unsigned grid[3] = {1, 1, 1};
    unsigned block[3] = {1, 1, 1};
    unsigned nthreads = 0;
    unsigned long long nblocks = 0;
    double timeout_s = 120.0;
    int poison = 1;
    unsigned char* smem = nullptr;
    size_t smem_bytes = 0;

    // running threads of the block (high 32 bits) and threads waiting at __syncthreads (low 32).
    std::atomic<uint64_t> bar{0};
    std::atomic<uint32_t> gen{0};        // bumped when a __syncthreads releases
    std::atomic<uint32_t> block_gen{0};  // bumped when every thread finished a block
    std::atomic<uint32_t> finished{0};
    std::atomic<bool> failed{false};
    std::mutex msg_mutex;
    std::string message;

    void fail(const std::string& why) {
        {
            std::lock_guard<std::mutex> lk(msg_mutex);
            if (message.empty()) message = why;
        }
        failed.store(true, std::memory_order_release);
        gen.fetch_add(1, std::memory_order_acq_rel);
        block_gen.fetch_add(1, std::memory_order_acq_rel);
        futex_wake_all(&gen);
        futex_wake_all(&block_gen);
    }

    void reset_smem() {
        if (smem_bytes) memset(smem, poison ? 0xFF : 0, smem_bytes);
    }

    void release_barrier() {
        bar.fetch_and(~uint64_t(0xFFFFFFFFu), std::memory_order_acq_rel);  // arrived = 0
        gen.fetch_add(1, std::memory_order_acq_rel);
        futex_wake_all(&gen);
    }

    // 0: go on; 1: the launch failed.
    int sync() {
        const uint32_t g = gen.load(std::memory_order_acquire);
        if (failed.load(std::memory_order_acquire)) return 1;  // fail() sets failed, then bumps gen
        const uint64_t s = bar.fetch_add(1, std::memory_order_acq_rel) + 1;
        if ((uint32_t)s == (uint32_t)(s >> 32)) {
            release_barrier();
            return failed.load(std::memory_order_acquire) ? 1 : 0;
        }
        if (!wait_change(gen, g, timeout_s)) {
            fail("__syncthreads waited more than " + std::to_string(timeout_s) +
                 " s (do all threads of the block reach the same barriers?)");
        }
        return failed.load(std::memory_order_acquire) ? 1 : 0;
    }

    // The calling thread is done with the current block; false when the launch failed.
    bool end_block() {
        const uint64_t s = bar.fetch_sub(uint64_t(1) << 32, std::memory_order_acq_rel) - (uint64_t(1) << 32);
        const uint32_t arrived = (uint32_t)s, running = (uint32_t)(s >> 32);
        if (arrived > 0 && arrived == running) release_barrier();
        const uint32_t bg = block_gen.load(std::memory_order_acquire);
        if (failed.load(std::memory_order_acquire)) return false;  // fail() sets failed, then bumps
        if (finished.fetch_add(1, std::memory_order_acq_rel) + 1 == nthreads) {
            finished.store(0, std::memory_order_relaxed);
            bar.store(uint64_t(nthreads) << 32, std::memory_order_relaxed);
            reset_smem();
            block_gen.fetch_add(1, std::memory_order_acq_rel);
            futex_wake_all(&block_gen);
        } else if (!wait_change(block_gen, bg, timeout_s)) {
            fail("a thread waited more than " + std::to_string(timeout_s) +
                 " s for the other threads of its block to finish");
        }
        return !failed.load(std::memory_order_acquire);
    }
};

thread_local Launch* tl_launch = nullptr;

void run_thread(Launch& L, unsigned index) {
    tl_launch = &L;
    unsigned v[12];
    v[0] = index % L.block[0];
    v[1] = (index / L.block[0]) % L.block[1];
    v[2] = index / (L.block[0] * L.block[1]);
    for (int k = 0; k < 3; ++k) {
        v[6 + k] = L.block[k];
        v[9 + k] = L.grid[k];
    }
    for (unsigned long long b = 0; b < L.nblocks; ++b) {
        v[3] = (unsigned)(b % L.grid[0]);
        v[4] = (unsigned)((b / L.grid[0]) % L.grid[1]);
        v[5] = (unsigned)(b / ((unsigned long long)L.grid[0] * L.grid[1]));
        if (!L.failed.load(std::memory_order_acquire)) L.fn(L.ctx, v);
        if (!L.end_block()) break;
    }
    tl_launch = nullptr;
}

// Parked worker threads, reused by every launch. Never destroyed (threads are detached).
struct Pool {
    std::mutex m;             // guards current/launch_gen pairs as seen by workers
    std::atomic<uint32_t> launch_gen{0};
    std::atomic<uint32_t> done{0};  // workers done with the current launch
    Launch* current = nullptr;
    unsigned nworkers = 0;
    pid_t pid = 0;
};

std::mutex g_launch_mutex;  // one launch at a time, process-wide
Pool* g_pool = nullptr;

void worker_main(Pool* pool, unsigned index, uint32_t seen) {
    for (;;) {
        wait_change(pool->launch_gen, seen, 0);
        Launch* L;
        {
            std::lock_guard<std::mutex> lk(pool->m);
            seen = pool->launch_gen.load(std::memory_order_acquire);
            L = pool->current;
        }
        if (L && index < L->nthreads) {
            run_thread(*L, index);
            if (pool->done.fetch_add(1, std::memory_order_acq_rel) + 1 == L->nthreads) futex_wake_all(&pool->done);
        }
    }
}

// Make sure the pool has n workers (a forked child starts a fresh pool). Caller holds g_launch_mutex.
void ensure_workers(unsigned n) {
    if (g_pool == nullptr || g_pool->pid != getpid()) {
        g_pool = new Pool();  // a pool inherited through fork() has no threads: leak it
        g_pool->pid = getpid();
    }
    while (g_pool->nworkers < n) {
        uint32_t seen;
        {
            std::lock_guard<std::mutex> lk(g_pool->m);
            seen = g_pool->launch_gen.load(std::memory_order_acquire);
        }
        std::thread(worker_main, g_pool, g_pool->nworkers, seen).detach();
        g_pool->nworkers++;
    }
}

int write_error(char* err, size_t errlen, const std::string& msg) {
    if (err && errlen) {
        const size_t n = msg.size() < errlen - 1 ? msg.size() : errlen - 1;
        memcpy(err, msg.data(), n);
        err[n] = 0;
    }
    return 1;
}

int rt_launch(gpuenhance_emu_block_fn fn, void* ctx, const unsigned* grid, const unsigned* block,
              size_t smem_bytes, double timeout_s, int poison, char* err, size_t errlen) {
    try {
        std::lock_guard<std::mutex> launch_lock(g_launch_mutex);
        const unsigned long long nthreads = (unsigned long long)block[0] * block[1] * block[2];
        if (nthreads == 0 || nthreads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0)
            return write_error(err, errlen, "invalid launch configuration");
        Launch L;
        L.fn = fn;
        L.ctx = ctx;
        for (int k = 0; k < 3; ++k) {
            L.grid[k] = grid[k];
            L.block[k] = block[k];
        }
        L.nthreads = (unsigned)nthreads;
        L.nblocks = (unsigned long long)grid[0] * grid[1] * grid[2];
        L.timeout_s = timeout_s;
        L.poison = poison;
        std::vector<unsigned char> storage;
        if (smem_bytes) {
            storage.resize(smem_bytes + 16);
            const uintptr_t p = reinterpret_cast<uintptr_t>(storage.data());
            L.smem = reinterpret_cast<unsigned char*>((p + 15) & ~uintptr_t(15));
            L.smem_bytes = smem_bytes;
            L.reset_smem();
        }
        L.bar.store(uint64_t(L.nthreads) << 32);
        try {
            ensure_workers(L.nthreads);
        } catch (const std::exception& e) {
            return write_error(err, errlen, std::string("could not start ") + std::to_string(nthreads) +
                                                " threads: " + e.what());
        }
        {
            std::lock_guard<std::mutex> lk(g_pool->m);
            g_pool->current = &L;
            g_pool->done.store(0, std::memory_order_release);
            g_pool->launch_gen.fetch_add(1, std::memory_order_acq_rel);
        }
        futex_wake_all(&g_pool->launch_gen);
        for (;;) {
            const uint32_t d = g_pool->done.load(std::memory_order_acquire);
            if (d == L.nthreads) break;
            wait_change(g_pool->done, d, 0);
        }
        {
            std::lock_guard<std::mutex> lk(g_pool->m);
            g_pool->current = nullptr;
        }
        if (L.failed.load()) {
            std::lock_guard<std::mutex> lk(L.msg_mutex);
            return write_error(err, errlen, L.message.empty() ? std::string("launch failed") : L.message);
        }
        return 0;
    } catch (const std::exception& e) {
        return write_error(err, errlen, std::string("launch failed: ") + e.what());
    }
}

int rt_sync() { return tl_launch ? tl_launch->sync() : 1; }

void* rt_smem() { return tl_launch ? tl_launch->smem : nullptr; }

void rt_fail(const char* message) {
    if (tl_launch) tl_launch->fail(message ? message : "kernel failed");
}

const gpuenhance_emu_api g_api = {GPUENHANCE_EMU_API_VERSION, rt_launch, rt_sync, rt_smem, rt_fail};

}  // namespace

extern "C" const gpuenhance_emu_api* gpuenhance_emu_runtime_api() { return &g_api; }
