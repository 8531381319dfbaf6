//! ferrule's echo server for the compressed echo benchmark: permessage-deflate at ferrule's
//! defaults (`DeflateConfig::default()`: 12-bit windows, memory level 5, level 6, messages of 64
//! bytes up compressed), one thread, as the other servers run. Usage: `ferrule-echo ADDR`.

use ferrule_tokio::{Ctx, DeflateConfig, Handler, HandlerError, Message, Options, OriginPolicy};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let options = Options::builder()
        .max_message_size(64 << 20)
        .allowed_origin(OriginPolicy::InsecureAllowAny)
        .compression(DeflateConfig::default())
        .build()?;
    let server = ferrule_tokio::serve(listener, options, |_, _| Ok(Echo));
    eprintln!("ferrule echo listening on ws://{}", server.local_addr()?);
    tokio::signal::ctrl_c().await?;
    server.shutdown(std::time::Duration::from_secs(5)).await;
    Ok(())
}
