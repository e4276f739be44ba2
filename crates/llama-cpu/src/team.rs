//! Helper threads for one forward pass.
//!
//! A forward pass with `threads > 1` starts `threads - 1` scoped helper threads, hands them
//! tasks through channels, and joins them before it returns: no thread outlives the call and
//! there is no global pool. Starting a thread costs tens of microseconds, a channel round
//! trip a few, so the helpers are started once per forward pass, not once per projection.
//!
//! Work is split by *output columns* (projections) or by *heads* (attention), never along a
//! reduction, so every output element is computed by the same operations whatever the thread
//! count: the results are bit-identical.

use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::Scope;

use ndarray::Array2;

/// A piece of work returning a block of output columns.
pub(crate) type Task<'env> = Box<dyn FnOnce() -> Array2<f32> + Send + 'env>;

/// The calling thread and its helpers.
pub(crate) struct Team<'env> {
    helpers: Vec<Sender<Task<'env>>>,
    results: Receiver<(usize, Array2<f32>)>,
    min_work: usize,
}

impl<'env> Team<'env> {
    /// Starts `helpers` threads in `scope`, which stop when the team is dropped; work is
    /// split so that each thread gets at least `min_work` multiply-adds.
    pub(crate) fn start<'scope>(
        scope: &'scope Scope<'scope, 'env>,
        helpers: usize,
        min_work: usize,
    ) -> Self {
        let (done, results) = channel();
        let helpers = (1..=helpers)
            .map(|index| {
                let (sender, tasks) = channel::<Task<'env>>();
                let done = done.clone();
                scope.spawn(move || {
                    for task in tasks {
                        if done.send((index, task())).is_err() {
                            break;
                        }
                    }
                });
                sender
            })
            .collect();
        Self {
            helpers,
            results,
            min_work,
        }
    }

    /// How many parts to split `work` multiply-adds into.
    pub(crate) fn parts(&self, work: usize) -> usize {
        self.size().min(1 + work / self.min_work.max(1))
    }

    /// Threads in the team, the caller included.
    pub(crate) fn size(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `tasks` (at most [`size`](Self::size)): the first on this thread, the others on
    /// the helpers. Returns their results in task order.
    pub(crate) fn run(&self, tasks: Vec<Task<'env>>) -> Vec<Array2<f32>> {
        debug_assert!(tasks.len() <= self.size());
        let mut tasks = tasks.into_iter();
        let Some(mine) = tasks.next() else {
            return Vec::new();
        };
        let mut sent = 0;
        for (helper, task) in self.helpers.iter().zip(tasks) {
            helper
                .send(task)
                .expect("helper threads live as long as the team");
            sent += 1;
        }
        let mut out = vec![mine()];
        out.resize_with(sent + 1, || Array2::zeros((0, 0)));
        for _ in 0..sent {
            let (index, result) = self.results.recv().expect("helpers answer every task");
            out[index] = result;
        }
        out
    }
}

/// Splits `0..len` into at most `parts` ranges, each (but the last) a multiple of `align`.
pub(crate) fn split(len: usize, parts: usize, align: usize) -> Vec<Range<usize>> {
    let step = len.div_ceil(parts.max(1)).next_multiple_of(align.max(1));
    (0..len)
        .step_by(step.max(1))
        .map(|start| start..(start + step).min(len))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_helpers_and_come_back_in_order() {
        std::thread::scope(|scope| {
            let team = Team::start(scope, 2, 10);
            assert_eq!((team.parts(5), team.parts(15), team.parts(100)), (1, 2, 3));
            assert_eq!(team.size(), 3);
            for _ in 0..3 {
                let tasks: Vec<Task<'_>> = (0..3)
                    .map(|i| Box::new(move || Array2::from_elem((1, 1), i as f32)) as Task<'_>)
                    .collect();
                let out = team.run(tasks);
                assert_eq!(
                    out.iter().map(|a| a[[0, 0]]).collect::<Vec<_>>(),
                    [0.0, 1.0, 2.0]
                );
            }
        });
        assert_eq!(split(10, 3, 4), [0..4, 4..8, 8..10]);
        assert_eq!(split(3, 2, 1), [0..2, 2..3]);
        assert_eq!(split(0, 2, 4), Vec::<Range<usize>>::new());
    }
}
