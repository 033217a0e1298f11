//! The executions waiting for a worker thread of the in-process executor. (The confined one
//! keeps its queue with its idle workers, under one lock: `confined/supervisor.rs`.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::worker::Job;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the queue consistent, even when it panics.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A FIFO of jobs that workers block on until it is stopped.
#[derive(Default)]
pub(crate) struct JobQueue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    shutdown: AtomicBool,
}

impl JobQueue {
    /// Queue `job` and wake one waiting worker.
    pub fn submit(&self, job: Job) {
        lock(&self.jobs).push_back(job);
        self.ready.notify_one();
    }

    /// The next job, blocking until there is one; `None` once the queue is stopped.
    pub fn next(&self) -> Option<Job> {
        let mut q = lock(&self.jobs);
        loop {
            if self.is_stopped() {
                return None;
            }
            if let Some(job) = q.pop_front() {
                return Some(job);
            }
            q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Stop: no job is handed out any more, queued jobs are dropped (they answer with an error
    /// as they drop) and every waiting worker wakes.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::Release);
        let queued: Vec<Job> = lock(&self.jobs).drain(..).collect();
        drop(queued);
        self.ready.notify_all();
    }

    /// Whether [`JobQueue::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}
