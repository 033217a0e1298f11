//! `console`: log, info, warn, error and debug, captured into the execution's log.

use std::cell::RefCell;
use std::rc::Rc;

use rquickjs::function::Rest;
use rquickjs::{Ctx, Function, Object, Value};

use super::convert::{self, Budget, Mode};
use super::{LogEntry, LogLevel};

/// The log of the execution a worker is running. Reset before each execution.
#[derive(Debug, Default)]
pub(crate) struct LogBuffer {
    pub(crate) entries: Vec<LogEntry>,
    used: usize,
    cap: usize,
    pub(crate) truncated: bool,
}

impl LogBuffer {
    pub(crate) fn reset(&mut self, cap: usize) {
        self.entries.clear();
        self.used = 0;
        self.cap = cap;
        self.truncated = false;
    }

    /// Bytes still allowed.
    fn left(&self) -> Option<usize> {
        (!self.truncated).then(|| self.cap.saturating_sub(self.used))
    }

    fn push(&mut self, level: LogLevel, data: Vec<serde_json::Value>, bytes: usize) {
        if self.truncated {
            return;
        }
        if bytes > self.cap.saturating_sub(self.used) {
            self.truncate();
            return;
        }
        self.used += bytes;
        self.entries.push(LogEntry {
            level,
            timestamp: now_rfc3339_ms(),
            data,
        });
    }

    /// Stop logging and append the marker entry.
    fn truncate(&mut self) {
        self.truncated = true;
        self.entries.push(LogEntry {
            level: LogLevel::Warn,
            timestamp: now_rfc3339_ms(),
            data: vec![serde_json::Value::String(format!(
                "[log truncated: console output exceeded max_log_bytes ({} bytes); later output dropped]",
                self.cap
            ))],
        });
    }

    pub(crate) fn take(&mut self) -> Vec<LogEntry> {
        std::mem::take(&mut self.entries)
    }
}

pub(crate) fn now_rfc3339_ms() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Define the global `console` in `ctx`, writing into `log`.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, log: &Rc<RefCell<LogBuffer>>) -> rquickjs::Result<()> {
    let console = Object::new(ctx.clone())?;
    for level in LogLevel::ALL {
        let log = Rc::clone(log);
        let f = Function::new(ctx.clone(), move |args: Rest<Value<'js>>| {
            record(&log, level, args.0)
        })?;
        f.set_name(level.as_str())?;
        console.set(level.as_str(), f)?;
    }
    ctx.globals().set("console", console)
}

fn record(
    log: &Rc<RefCell<LogBuffer>>,
    level: LogLevel,
    args: Vec<Value<'_>>,
) -> rquickjs::Result<()> {
    // Never hold the borrow while converting: a getter or toJSON may log in turn.
    let Some(left) = log.borrow().left() else {
        return Ok(());
    };
    // One byte more than allowed tells "fits exactly" from "too big".
    let mut budget = Budget::new(left.saturating_add(1));
    let mut data = Vec::with_capacity(args.len());
    for arg in args {
        match convert::to_json(arg, Mode::Log, &mut budget) {
            Ok(v) => data.push(v),
            Err(convert::ConvertError::Js(e)) => return Err(e),
            // Log mode never refuses a value.
            Err(e) => data.push(serde_json::Value::String(e.to_string())),
        }
        if budget.exhausted {
            break;
        }
    }
    let used = left.saturating_add(1) - budget.left();
    let mut log = log.borrow_mut();
    if budget.exhausted {
        log.push(level, data, usize::MAX);
    } else {
        log.push(level, data, used);
    }
    Ok(())
}
