//! `#[taskscope::main]`: `#[tokio::main]` with taskscope's agent.

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
    match expand(args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let mut func: ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.take().is_none() {
        return Err(syn::Error::new_spanned(
            func.sig.fn_token,
            "#[taskscope::main] goes on an async fn, as #[tokio::main] does",
        ));
    }
    let args = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args)?;
    let mut flavor = quote!(::taskscope::__private::Flavor::MultiThread);
    let mut workers = quote!(::core::option::Option::None);
    let mut current_thread = false;
    let mut saw_workers = None;
    for arg in args {
        let name = arg.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        match (name.as_str(), &arg.value) {
            ("flavor", Expr::Lit(ExprLit { lit: Lit::Str(s), .. })) => match s.value().as_str() {
                "multi_thread" => {}
                "current_thread" => {
                    current_thread = true;
                    flavor = quote!(::taskscope::__private::Flavor::CurrentThread);
                }
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
            _ => {
                return Err(syn::Error::new_spanned(
                    &arg,
                    "unknown argument: #[taskscope::main] takes flavor = \"...\" and worker_threads = N",
                ))
            }
        }
    }
    if let (true, Some(value)) = (current_thread, saw_workers) {
        return Err(syn::Error::new_spanned(
            value,
            "worker_threads has no meaning with flavor = \"current_thread\"",
        ));
    }
    let body = &func.block;
    let output = &func.sig.output;
    let attrs = &func.attrs;
    let vis = &func.vis;
    let sig = &func.sig;
    let _ = output;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let body = async move #body;
            ::taskscope::__private::run(#flavor, #workers, body)
        }
    })
}
