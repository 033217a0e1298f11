//! JavaScript values to JSON and back.
//!
//! Results and log arguments are walked here rather than with `JSON.stringify`, for three
//! reasons: `undefined` becomes `null` and a BigInt its decimal string (where JSON.stringify
//! drops or throws), a cycle or a function in a result is a clear error naming where it is
//! (not a silently missing key), and a size budget stops the walk early so a 60 MB value never
//! becomes a 60 MB host allocation.

use rquickjs::{Array, Coerced, FromJs, Function, Object, Value};
use serde_json::{Map, Number, Value as Json};

/// How strict the conversion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The script's result: functions, symbols and cycles are errors.
    Result,
    /// `console` arguments: they print as `"[Function: f]"`, the symbol, `"[Circular]"`.
    Log,
}

/// Values nested deeper than this are refused (the walk is recursive on the host stack).
pub(crate) const MAX_DEPTH: usize = 256;

/// Bytes of JSON the walk may still produce. When it runs out the walk stops descending and
/// `exhausted` is set; the caller truncates.
#[derive(Debug)]
pub(crate) struct Budget {
    left: usize,
    pub(crate) exhausted: bool,
}

impl Budget {
    pub(crate) fn new(bytes: usize) -> Self {
        Budget {
            left: bytes,
            exhausted: false,
        }
    }

    /// Bytes still allowed.
    pub(crate) fn left(&self) -> usize {
        self.left
    }

    fn spend(&mut self, bytes: usize) -> bool {
        if bytes > self.left {
            self.left = 0;
            self.exhausted = true;
            false
        } else {
            self.left -= bytes;
            true
        }
    }
}

/// Why a value cannot be a result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConvertError {
    #[error("result is not serializable: {what} at {path}")]
    NotSerializable { what: &'static str, path: String },
    #[error("result is not serializable: value nested deeper than {MAX_DEPTH} levels at {path}")]
    TooDeep { path: String },
    #[error("{0}")]
    Js(#[from] rquickjs::Error),
}

enum Seg {
    Index(usize),
    Key(String),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::from("$");
    for seg in path {
        match seg {
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
            Seg::Key(k) => s.push_str(&format!(".{k}")),
        }
    }
    s
}

struct Walk<'a, 'js> {
    mode: Mode,
    budget: &'a mut Budget,
    /// Objects on the path from the root: a value equal to one of them is a cycle.
    ancestors: Vec<Object<'js>>,
    path: Vec<Seg>,
}

/// Convert `v` to JSON under `budget`.
pub(crate) fn to_json<'js>(
    v: Value<'js>,
    mode: Mode,
    budget: &mut Budget,
) -> Result<Json, ConvertError> {
    let mut walk = Walk {
        mode,
        budget,
        ancestors: Vec::new(),
        path: Vec::new(),
    };
    walk.value(v)
}

impl<'js> Walk<'_, 'js> {
    fn refuse(&self, what: &'static str, shown: String) -> Result<Json, ConvertError> {
        match self.mode {
            Mode::Result => Err(ConvertError::NotSerializable {
                what,
                path: path_string(&self.path),
            }),
            Mode::Log => Ok(self.string(shown)),
        }
    }

    fn string(&self, s: String) -> Json {
        Json::String(s)
    }

    fn value(&mut self, v: Value<'js>) -> Result<Json, ConvertError> {
        if self.budget.exhausted {
            return Ok(Json::Null);
        }
        if v.is_undefined() || v.is_null() {
            self.budget.spend(4);
            return Ok(Json::Null);
        }
        if let Some(b) = v.as_bool() {
            self.budget.spend(5);
            return Ok(Json::Bool(b));
        }
        if let Some(i) = v.as_int() {
            self.budget.spend(11);
            return Ok(Json::Number(i.into()));
        }
        if let Some(f) = v.as_float() {
            self.budget.spend(24);
            return Ok(number(f));
        }
        if let Some(s) = v.as_string() {
            let s = s.to_string()?;
            if !self.budget.spend(s.len() + 2) {
                return Ok(Json::Null);
            }
            return Ok(Json::String(s));
        }
        if v.is_big_int() {
            let s = Coerced::<String>::from_js(v.ctx(), v.clone())?.0;
            self.budget.spend(s.len() + 2);
            return Ok(Json::String(s));
        }
        if v.is_symbol() {
            let shown = v
                .as_symbol()
                .and_then(|s| s.description().ok())
                .and_then(|d| d.as_string().and_then(|s| s.to_string().ok()))
                .unwrap_or_default();
            return self.refuse("a symbol", format!("Symbol({shown})"));
        }
        if v.is_function() {
            let name = v
                .as_object()
                .and_then(|o| o.get::<_, Option<String>>("name").ok().flatten())
                .unwrap_or_default();
            let shown = if name.is_empty() {
                "[Function (anonymous)]".to_string()
            } else {
                format!("[Function: {name}]")
            };
            return self.refuse("a function", shown);
        }
        let Some(obj) = v.as_object().cloned() else {
            // Modules and other engine-internal values never reach scripts' results.
            return self.refuse("an engine value", format!("[{}]", v.type_name()));
        };
        if self
            .ancestors
            .iter()
            .any(|a| a.as_value() == obj.as_value())
        {
            return self.refuse("a cyclic reference", "[Circular]".to_string());
        }
        if self.ancestors.len() >= MAX_DEPTH {
            return match self.mode {
                Mode::Result => Err(ConvertError::TooDeep {
                    path: path_string(&self.path),
                }),
                Mode::Log => Ok(Json::String("[Object]".into())),
            };
        }
        if v.is_error() {
            let name: Option<String> = obj.get::<_, Coerced<String>>("name").ok().map(|c| c.0);
            let message: Option<String> =
                obj.get::<_, Coerced<String>>("message").ok().map(|c| c.0);
            let s = match (name, message) {
                (Some(n), Some(m)) if !m.is_empty() => format!("{n}: {m}"),
                (Some(n), _) => n,
                (None, Some(m)) => m,
                (None, None) => "Error".into(),
            };
            self.budget.spend(s.len() + 2);
            return Ok(Json::String(s));
        }
        // Like JSON.stringify: an object with a toJSON method (a Date) stands for its value.
        if let Ok(to_json) = obj.get::<_, Function>("toJSON") {
            let replaced: Value = to_json.call((rquickjs::function::This(obj.clone()),))?;
            self.ancestors.push(obj);
            let out = self.value(replaced);
            self.ancestors.pop();
            return out;
        }
        self.ancestors.push(obj.clone());
        let out = if let Some(arr) = obj.as_array() {
            self.array(arr)
        } else {
            self.object(&obj)
        };
        self.ancestors.pop();
        out
    }

    fn array(&mut self, arr: &Array<'js>) -> Result<Json, ConvertError> {
        let len = arr.len();
        self.budget.spend(2);
        let mut out = Vec::with_capacity(len.min(1024));
        for i in 0..len {
            if self.budget.exhausted {
                break;
            }
            let item: Value = arr.get(i)?;
            self.path.push(Seg::Index(i));
            let j = self.value(item)?;
            self.path.pop();
            self.budget.spend(1);
            out.push(j);
        }
        Ok(Json::Array(out))
    }

    fn object(&mut self, obj: &Object<'js>) -> Result<Json, ConvertError> {
        self.budget.spend(2);
        let mut out = Map::new();
        for key in obj.keys::<String>() {
            if self.budget.exhausted {
                break;
            }
            let key = key?;
            let item: Value = obj.get(key.as_str())?;
            // JSON.stringify skips undefined members and functions in objects; a result keeps
            // skipping undefined but reports functions (they are almost always a mistake).
            if item.is_undefined() {
                continue;
            }
            if !self.budget.spend(key.len() + 4) {
                break;
            }
            self.path.push(Seg::Key(key.clone()));
            let j = self.value(item)?;
            self.path.pop();
            out.insert(key, j);
        }
        Ok(Json::Object(out))
    }
}

/// A JavaScript number as JSON: integral values as integers, NaN and infinities as `null`.
fn number(f: f64) -> Json {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        // Exact: |f| < 2^53 and integral.
        Json::Number((f as i64).into())
    } else {
        Number::from_f64(f).map_or(Json::Null, Json::Number)
    }
}

/// Serialize `v` and cut it to `cap` bytes (on a char boundary) with a marker, when larger.
/// Returns the JSON value to report and whether it was cut.
pub(crate) fn cap_result(v: Json, exhausted: bool, cap: usize) -> (Json, bool) {
    if !exhausted {
        // Cheap upper bound first: the budget already tracked the size closely.
        let text = v.to_string();
        if text.len() <= cap {
            return (v, false);
        }
        return (Json::String(truncated(&text, cap)), true);
    }
    (Json::String(truncated(&v.to_string(), cap)), true)
}

/// The first `cap` bytes of `text` plus the truncation marker.
pub(crate) fn truncated(text: &str, cap: usize) -> String {
    let mut end = cap.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &text[..end], truncation_marker(cap))
}

/// The marker appended to cut output.
pub(crate) fn truncation_marker(cap: usize) -> String {
    format!("...[truncated: over the {cap}-byte limit]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_integers_when_integral() {
        assert_eq!(number(3.0), serde_json::json!(3));
        assert_eq!(number(-0.0), serde_json::json!(0));
        assert_eq!(number(1.5), serde_json::json!(1.5));
        assert_eq!(number(f64::NAN), Json::Null);
        assert_eq!(number(f64::INFINITY), Json::Null);
        assert_eq!(number(1e300), serde_json::json!(1e300));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "ééé";
        let t = truncated(s, 3);
        assert!(t.starts_with('é'));
        assert!(t.ends_with(&truncation_marker(3)));
    }

    #[test]
    fn budget_stops_when_exhausted() {
        let mut b = Budget::new(10);
        assert!(b.spend(6));
        assert!(!b.spend(6));
        assert!(b.exhausted);
    }
}
