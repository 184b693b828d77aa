//! `#[test_deadline::test]`: the attribute every integration test of
//! switchyard carries. It is `#[actix_web::test]` (or `#[tokio::test]` with
//! `#[test_deadline::test(tokio)]`) with a deadline: the test's first
//! statement arms `crate::common::Deadline`, a watchdog that ends the test
//! binary with the test's name if the test is still running when its time
//! is up (180 s, or `secs = N`). A hung test then fails the run in minutes
//! and names itself, rather than holding CI until its limit.
//!
//! Plain `proc_macro` token handling (no syn): the item is an `async fn`
//! whose last token is its body; the guard goes in front of the body.

use proc_macro::{Delimiter, Group, TokenStream, TokenTree};

/// The deadline of a test that does not name one, in seconds. The slowest
/// tests (a switch killed and its agents recovered elsewhere) take about
/// 40 s alone on the 2-core box; four times that leaves room for a loaded
/// machine.
const DEFAULT_SECS: u64 = 180;

#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let (runtime, secs) = match parse_args(attr) {
        Ok(args) => args,
        Err(message) => return compile_error(&message),
    };
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let name = match fn_name(&tokens) {
        Some(name) => name,
        None => return compile_error("#[test_deadline::test] goes on an `async fn`"),
    };
    let body = match tokens.pop() {
        Some(TokenTree::Group(body)) if body.delimiter() == Delimiter::Brace => body,
        _ => return compile_error("#[test_deadline::test] goes on a function with a body"),
    };
    let guard: TokenStream = format!(
        "let _deadline = crate::common::Deadline::arm(\
         ::core::concat!(::core::module_path!(), \"::{name}\"), {secs});"
    )
    .parse()
    .expect("the guard statement parses");
    let mut inner = guard;
    inner.extend(body.stream());
    let mut new_body = Group::new(Delimiter::Brace, inner);
    new_body.set_span(body.span());
    tokens.push(TokenTree::Group(new_body));

    let mut out: TokenStream = format!("#[::{runtime}::test]")
        .parse()
        .expect("the runtime attribute parses");
    out.extend(tokens);
    out
}

/// `tokio` picks `#[tokio::test]`; `secs = N` sets the deadline.
fn parse_args(attr: TokenStream) -> Result<(&'static str, u64), String> {
    let mut runtime = "actix_web";
    let mut secs = DEFAULT_SECS;
    let tokens: Vec<TokenTree> = attr.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Ident(id) if id.to_string() == "tokio" => runtime = "tokio",
            TokenTree::Ident(id) if id.to_string() == "secs" => {
                let value = match (tokens.get(i + 1), tokens.get(i + 2)) {
                    (Some(TokenTree::Punct(eq)), Some(TokenTree::Literal(n)))
                        if eq.as_char() == '=' =>
                    {
                        n.to_string()
                    }
                    _ => return Err("expected `secs = N`".into()),
                };
                secs = value
                    .parse()
                    .map_err(|_| format!("`secs = {value}`: not a whole number of seconds"))?;
                i += 2;
            }
            TokenTree::Punct(p) if p.as_char() == ',' => {}
            other => return Err(format!("unknown argument `{other}`: `tokio`, `secs = N`")),
        }
        i += 1;
    }
    Ok((runtime, secs))
}

/// The identifier after `fn`.
fn fn_name(tokens: &[TokenTree]) -> Option<String> {
    let at = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(id) if id.to_string() == "fn"))?;
    match tokens.get(at + 1) {
        Some(TokenTree::Ident(name)) => Some(name.to_string()),
        _ => None,
    }
}

fn compile_error(message: &str) -> TokenStream {
    let mut out: TokenStream = "::core::compile_error!".parse().expect("parses");
    let mut args = TokenStream::new();
    args.extend([TokenTree::Literal(proc_macro::Literal::string(message))]);
    out.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, args))]);
    out.extend([TokenTree::Punct(proc_macro::Punct::new(
        ';',
        proc_macro::Spacing::Alone,
    ))]);
    out
}
