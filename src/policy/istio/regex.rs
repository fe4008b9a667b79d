//! A small RE2-compatible matcher for the regexes istiod writes into Envoy RBAC
//! (`.+`, `spiffe://.*<suffix>`, `.*/ns/<ns>/.*`, the service-account pattern, quoted header
//! alternations). Envoy's `safe_regex` is a *full* match, and so is [`Regex::is_full_match`].
//!
//! Supported: literals, `\` escapes of punctuation, `.` (any character but newline), groups
//! `( )` and `(?: )`, alternation `|`, the greedy and lazy quantifiers `* + ?`, anchors `^ $`.
//! Anything else (classes, counted repetition, flags, `\d`...) is refused with an error rather
//! than guessed, so a caller can report the value as unsupported. Matching is a Pike VM: linear
//! in the input, no backtracking blow-up.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ast {
    Empty,
    Char(char),
    Any,
    Start,
    End,
    Concat(Vec<Ast>),
    Alt(Vec<Ast>),
    Star(Box<Ast>),
    Plus(Box<Ast>),
    Quest(Box<Ast>),
}

#[derive(Clone, Copy, Debug)]
enum Inst {
    Char(char),
    Any,
    Start,
    End,
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A compiled regex.
#[derive(Clone)]
pub struct Regex {
    source: String,
    prog: Vec<Inst>,
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.source)
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Regex {}

impl Regex {
    pub fn new(source: &str) -> Result<Regex, String> {
        let chars: Vec<char> = source.chars().collect();
        let mut parser = Parser {
            chars: &chars,
            pos: 0,
        };
        let ast = parser.alternation()?;
        if parser.pos != chars.len() {
            return Err(format!("unbalanced ')' at offset {}", parser.pos));
        }
        let mut prog = Vec::new();
        compile(&ast, &mut prog);
        prog.push(Inst::Match);
        Ok(Regex {
            source: source.to_owned(),
            prog,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches (RE2 `FullMatch`, Envoy `safe_regex`).
    pub fn is_full_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let n = self.prog.len();
        let mut current = Vec::with_capacity(n);
        let mut seen = vec![usize::MAX; n];
        self.add(&mut current, &mut seen, 0, 0, chars.len());
        for (i, c) in chars.iter().enumerate() {
            let mut next = Vec::with_capacity(n);
            for &pc in &current {
                let step = match self.prog[pc] {
                    Inst::Char(want) => want == *c,
                    Inst::Any => *c != '\n',
                    _ => false,
                };
                if step {
                    self.add(&mut next, &mut seen, pc + 1, i + 1, chars.len());
                }
            }
            current = next;
            if current.is_empty() {
                return false;
            }
        }
        current
            .iter()
            .any(|&pc| matches!(self.prog[pc], Inst::Match))
    }

    /// Follows empty transitions from `pc` at input position `pos`, collecting the states that
    /// consume input (or accept).
    fn add(&self, list: &mut Vec<usize>, seen: &mut [usize], pc: usize, pos: usize, len: usize) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if pc >= self.prog.len() || seen[pc] == pos {
                continue;
            }
            seen[pc] = pos;
            match self.prog[pc] {
                Inst::Jmp(to) => stack.push(to),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Start => {
                    if pos == 0 {
                        stack.push(pc + 1);
                    }
                }
                Inst::End => {
                    if pos == len {
                        stack.push(pc + 1);
                    }
                }
                Inst::Char(_) | Inst::Any | Inst::Match => list.push(pc),
            }
        }
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Ast, String> {
        let mut branches = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Ast::Empty)
        } else {
            Ast::Alt(branches)
        })
    }

    fn concat(&mut self) -> Result<Ast, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            0 => Ast::Empty,
            1 => items.pop().unwrap_or(Ast::Empty),
            _ => Ast::Concat(items),
        })
    }

    fn quantified(&mut self, mut atom: Ast) -> Result<Ast, String> {
        let mut quantified = false;
        while let Some(c) = self.peek() {
            let wrap: fn(Box<Ast>) -> Ast = match c {
                '*' => Ast::Star,
                '+' => Ast::Plus,
                '?' => Ast::Quest,
                '{' => return Err("counted repetition {n,m} is not supported".into()),
                _ => break,
            };
            if quantified {
                return Err(format!("repeated quantifier '{c}'"));
            }
            if matches!(atom, Ast::Start | Ast::End | Ast::Empty) {
                return Err(format!("'{c}' has nothing to repeat"));
            }
            self.pos += 1;
            atom = wrap(Box::new(atom));
            quantified = true;
            // A lazy suffix changes which match is found, never whether one is.
            if self.peek() == Some('?') {
                self.pos += 1;
            }
        }
        Ok(atom)
    }

    fn atom(&mut self) -> Result<Ast, String> {
        let Some(c) = self.peek() else {
            return Ok(Ast::Empty);
        };
        self.pos += 1;
        match c {
            '.' => Ok(Ast::Any),
            '^' => Ok(Ast::Start),
            '$' => Ok(Ast::End),
            '(' => {
                if self.peek() == Some('?') {
                    if self.chars.get(self.pos + 1) == Some(&':') {
                        self.pos += 2;
                    } else {
                        return Err("group flags (?...) are not supported".into());
                    }
                }
                let inner = self.alternation()?;
                if self.peek() != Some(')') {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            '\\' => match self.peek() {
                Some(e) if e.is_ascii_punctuation() => {
                    self.pos += 1;
                    Ok(Ast::Char(e))
                }
                Some(e) => Err(format!("escape \\{e} is not supported")),
                None => Err("trailing backslash".into()),
            },
            '[' | ']' | '{' | '}' => Err(format!(
                "'{c}' (character classes / repetition) is not supported"
            )),
            '*' | '+' | '?' => Err(format!("'{c}' has nothing to repeat")),
            c => Ok(Ast::Char(c)),
        }
    }
}

fn compile(ast: &Ast, prog: &mut Vec<Inst>) {
    match ast {
        Ast::Empty => {}
        Ast::Char(c) => prog.push(Inst::Char(*c)),
        Ast::Any => prog.push(Inst::Any),
        Ast::Start => prog.push(Inst::Start),
        Ast::End => prog.push(Inst::End),
        Ast::Concat(items) => items.iter().for_each(|i| compile(i, prog)),
        Ast::Alt(branches) => {
            // split L1, next; L1: branch; jmp end; next: ...
            let mut jumps = Vec::new();
            for (i, branch) in branches.iter().enumerate() {
                if i + 1 < branches.len() {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(branch, prog);
                    jumps.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    let next = prog.len();
                    prog[split] = Inst::Split(split + 1, next);
                } else {
                    compile(branch, prog);
                }
            }
            let end = prog.len();
            for j in jumps {
                prog[j] = Inst::Jmp(end);
            }
        }
        Ast::Star(inner) => {
            let split = prog.len();
            prog.push(Inst::Split(split + 1, 0));
            compile(inner, prog);
            prog.push(Inst::Jmp(split));
            let end = prog.len();
            prog[split] = Inst::Split(split + 1, end);
        }
        Ast::Plus(inner) => {
            let start = prog.len();
            compile(inner, prog);
            let split = prog.len();
            prog.push(Inst::Split(start, split + 1));
        }
        Ast::Quest(inner) => {
            let split = prog.len();
            prog.push(Inst::Split(split + 1, 0));
            compile(inner, prog);
            let end = prog.len();
            prog[split] = Inst::Split(split + 1, end);
        }
    }
}

/// Escapes RE2 metacharacters (Go's `regexp.QuoteMeta`).
pub fn quote_meta(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(re: &str, text: &str) -> bool {
        Regex::new(re).expect("compiles").is_full_match(text)
    }

    #[test]
    fn istiod_patterns() {
        assert!(m(".+", "x"));
        assert!(!m(".+", ""));
        assert!(m(".*/ns/foo/.*", "spiffe://cluster.local/ns/foo/sa/bar"));
        assert!(!m(
            ".*/ns/foo/.*",
            "spiffe://cluster.local/ns/foobar/sa/bar"
        ));
        assert!(!m(".*/ns/foo/.*", "spiffe://tradepulse/prod/strategy"));
        assert!(m(
            ".*/ns/ns-prefix-.*/.*",
            "spiffe://td/ns/ns-prefix-a/sa/b"
        ));
        assert!(m("spiffe://.*-suffix", "spiffe://td/ns/a/sa/x-suffix"));
        assert!(!m("spiffe://.*-suffix", "spiffe://td/ns/a/sa/x-suffixy"));
        // istiod does not escape: '.' in a suffix matches any character.
        assert!(m(
            "spiffe://.*.local/ns/a/sa/b",
            "spiffe://clusterXlocal/ns/a/sa/b"
        ));
        let sa = "spiffe://.+/ns/default/(.+/|)sa/curl(/.+)?";
        assert!(m(sa, "spiffe://cluster.local/ns/default/sa/curl"));
        assert!(m(sa, "spiffe://td/ns/default/x/sa/curl/extra"));
        assert!(!m(sa, "spiffe://td/ns/default/sa/curl-other"));
        assert!(!m(sa, "spiffe://td/ns/other/sa/curl"));
    }

    #[test]
    fn anchors_alternation_and_quoting() {
        let v = quote_meta("a.b");
        let re = format!("^{v}$|^{v},.*|.*,{v},.*|.*,{v}$");
        assert!(m(&re, "a.b"));
        assert!(m(&re, "x,a.b"));
        assert!(m(&re, "a.b,y"));
        assert!(!m(&re, "aXb"));
        assert!(!m(&re, "xa.b"));
        assert!(m("(?:ab)+", "abab"));
        assert!(m("ab*?c", "abbc"));
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        for re in ["[a-z]", "a{2}", "(?i)a", "\\d", "(a", "a)", "*a", "a**"] {
            assert!(Regex::new(re).is_err(), "{re} should be refused");
        }
    }
}
