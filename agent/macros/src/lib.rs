//! `#[taskscope::main]`: `#[tokio::main]` with taskscope's agent.
//! `#[taskscope::test]`: `#[tokio::test]` that fails a test leaving tasks
//! behind.

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, ItemFn, Lit, MetaNameValue, Token};

/// A drop-in replacement for `#[tokio::main]` that installs taskscope's
/// runtime hooks and starts its agent. Takes the same `flavor`
/// (`"multi_thread"` or `"current_thread"`) and `worker_threads` arguments.
///
/// ```ignore
/// #[taskscope::main(flavor = "multi_thread", worker_threads = 2)]
/// async fn main() {}
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(Macro::Main, args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// A drop-in replacement for `#[tokio::test]` that runs the test on a
/// runtime with taskscope's hooks (and no debug endpoint), then fails it if
/// tasks it spawned are still alive after a grace second, with a report
/// naming where they were spawned. See `taskscope::testing`.
///
/// Takes `#[tokio::test]`'s `flavor` (default `"current_thread"`) and
/// `worker_threads` arguments, and `ignore = "src/pool.rs"` (repeatable) for
/// tasks that are meant to outlive the test, matched against their spawn
/// location.
///
/// ```ignore
/// #[taskscope::test(flavor = "multi_thread", worker_threads = 2)]
/// async fn serves_one_request() {
///     // ...
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(Macro::Test, args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Macro {
    Main,
    Test,
}

impl Macro {
    fn name(self) -> &'static str {
        match self {
            Macro::Main => "main",
            Macro::Test => "test",
        }
    }
}

fn expand(
    kind: Macro,
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let name = kind.name();
    let mut func: ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.take().is_none() {
        return Err(syn::Error::new_spanned(
            func.sig.fn_token,
            format!("#[taskscope::{name}] goes on an async fn, as #[tokio::{name}] does"),
        ));
    }
    if kind == Macro::Test {
        if let Some(attr) = func.attrs.iter().find(|a| a.path().is_ident("test")) {
            return Err(syn::Error::new_spanned(
                attr,
                "#[taskscope::test] adds #[test] itself; remove this one",
            ));
        }
    }
    let args = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args)?;
    // Like tokio: main defaults to the multi-thread runtime, test to the
    // current-thread one.
    let mut current_thread = kind == Macro::Test;
    let mut workers = quote!(::core::option::Option::None);
    let mut saw_workers = None;
    let mut ignore = Vec::new();
    for arg in args {
        let arg_name = arg.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        match (arg_name.as_str(), &arg.value) {
            ("flavor", Expr::Lit(ExprLit { lit: Lit::Str(s), .. })) => match s.value().as_str() {
                "multi_thread" => current_thread = false,
                "current_thread" => current_thread = true,
                other => {
                    return Err(syn::Error::new_spanned(
                        s,
                        format!("unknown flavor {other:?}: expected \"multi_thread\" or \"current_thread\""),
                    ))
                }
            },
            ("worker_threads", Expr::Lit(ExprLit { lit: Lit::Int(n), .. })) => {
                let n: usize = n.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(&arg.value, "worker_threads must be at least 1"));
                }
                workers = quote!(::core::option::Option::Some(#n));
                saw_workers = Some(arg.value.clone());
            }
            ("ignore", Expr::Lit(ExprLit { lit: Lit::Str(s), .. })) if kind == Macro::Test => {
                ignore.push(s.value());
            }
            _ => {
                let takes = match kind {
                    Macro::Main => "flavor = \"...\" and worker_threads = N",
                    Macro::Test => "flavor = \"...\", worker_threads = N and ignore = \"spawn location\"",
                };
                return Err(syn::Error::new_spanned(
                    &arg,
                    format!("unknown argument: #[taskscope::{name}] takes {takes}"),
                ));
            }
        }
    }
    let flavor = if current_thread {
        quote!(::taskscope::__private::Flavor::CurrentThread)
    } else {
        quote!(::taskscope::__private::Flavor::MultiThread)
    };
    if let (true, Some(value)) = (current_thread, saw_workers) {
        let message = match kind {
            Macro::Main => "worker_threads has no meaning with flavor = \"current_thread\"",
            Macro::Test => {
                "worker_threads needs flavor = \"multi_thread\": #[taskscope::test] runs on a \
                 current-thread runtime by default, as #[tokio::test] does"
            }
        };
        return Err(syn::Error::new_spanned(value, message));
    }
    let body = &func.block;
    let output = &func.sig.output;
    let attrs = &func.attrs;
    let vis = &func.vis;
    let sig = &func.sig;
    let _ = output;
    Ok(match kind {
        Macro::Main => quote! {
            #(#attrs)*
            #vis #sig {
                let body = async move #body;
                ::taskscope::__private::run(#flavor, #workers, body)
            }
        },
        Macro::Test => quote! {
            #[::core::prelude::v1::test]
            #(#attrs)*
            #vis #sig {
                let body = async move #body;
                ::taskscope::__private::run_test(#flavor, #workers, &[#(#ignore),*], body)
            }
        },
    })
}
