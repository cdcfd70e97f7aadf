//! `twinset token create|list|delete`: join tokens, as kubeadm's `token` verbs. `create`
//! prints only the token (so `TOKEN=$(twinset token create)` works); `list` shows ids,
//! time left, uses left and restrictions, never a secret.
use super::Ctx;
use crate::args::{TokenArgs, TokenCommand, TokenCreateArgs, TokenDeleteArgs};
use crate::print::tabwriter::TabWriter;
use crate::report::{self, AlreadyReported};
use std::time::{Duration, SystemTime};
use twinset_proto::token::Token;
use twinset_proto::v1::{CreateTokenRequest, DeleteTokenRequest, ListTokensRequest, TokenInfo};

/// Runs a `token` sub-verb.
pub async fn run(ctx: &Ctx, args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create(a) => create(ctx, a).await,
        TokenCommand::List => list(ctx).await,
        TokenCommand::Delete(a) => delete(ctx, a).await,
    }
}

/// `--ttl`: a duration (`24h`, `90m`, `7d`), or `0` for a token that never expires.
pub fn parse_ttl(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| {
        anyhow::anyhow!("invalid --ttl {s:?}: {e} (use e.g. 24h, 30m, 7d; 0 never expires)")
    })
}

/// The CreateToken request `token create` sends.
pub fn create_request(a: &TokenCreateArgs) -> anyhow::Result<CreateTokenRequest> {
    let ttl = parse_ttl(&a.ttl)?;
    if ttl.subsec_nanos() != 0 {
        anyhow::bail!("invalid --ttl {:?}: use whole seconds", a.ttl);
    }
    let ttl_seconds = i64::try_from(ttl.as_secs())
        .map_err(|_| anyhow::anyhow!("invalid --ttl {:?}: too long", a.ttl))?;
    let uses = match a.uses {
        None => 0,
        Some(0) => anyhow::bail!("--uses must be at least 1 (leave it out for unlimited uses)"),
        Some(n) => i32::try_from(n)
            .map_err(|_| anyhow::anyhow!("--uses {n} is too large (at most {})", i32::MAX))?,
    };
    Ok(CreateTokenRequest {
        ttl_seconds,
        uses,
        node: a.node.clone().unwrap_or_default(),
        description: a.description.clone(),
    })
}

async fn create(ctx: &Ctx, a: TokenCreateArgs) -> anyhow::Result<()> {
    let request = create_request(&a)?;
    let mut client = ctx.client().await?;
    let made = client
        .cluster
        .create_token(request)
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    report::outln(&made.token);
    Ok(())
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let tokens = client
        .cluster
        .list_tokens(ListTokensRequest {})
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .tokens;
    if tokens.is_empty() {
        eprintln!("No join tokens found.");
        return Ok(());
    }
    report::out(&table(&tokens, SystemTime::now()));
    Ok(())
}

/// kubeadm's token table: TOKEN (the id only) TTL EXPIRES USAGES (joins left) NODE DESCRIPTION.
pub fn table(tokens: &[TokenInfo], now: SystemTime) -> String {
    let mut w = TabWriter::table();
    w.write("TOKEN\tTTL\tEXPIRES\tUSAGES\tNODE\tDESCRIPTION\n");
    for t in tokens {
        let (ttl, expires) = match twinset_proto::time::parse(&t.expires) {
            _ if t.expires.is_empty() => ("<forever>".to_string(), "<never>".to_string()),
            None => ("<invalid>".to_string(), t.expires.clone()),
            Some(at) => match at.duration_since(now) {
                Ok(left) if !left.is_zero() => {
                    (twinset_proto::time::human_duration(left), t.expires.clone())
                }
                _ => ("<expired>".to_string(), t.expires.clone()),
            },
        };
        let usages = match t.uses_left {
            None => "unlimited".to_string(),
            Some(n) => n.to_string(),
        };
        let node = if t.node.is_empty() { "<any>" } else { &t.node };
        let description = if t.description.is_empty() {
            "<none>"
        } else {
            &t.description
        };
        w.write(&format!(
            "{}\t{ttl}\t{expires}\t{usages}\t{node}\t{description}\n",
            t.id
        ));
    }
    w.finish()
}

/// The id `token delete` sends for what the user typed: an id, or a whole token (only
/// its id leaves the machine).
pub fn id_of(word: &str) -> String {
    match Token::parse(word) {
        Ok(t) => t.id().to_string(),
        Err(_) => word.trim().to_string(),
    }
}

async fn delete(ctx: &Ctx, a: TokenDeleteArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let mut failed = false;
    for word in &a.ids {
        let id = id_of(word);
        match client
            .cluster
            .delete_token(DeleteTokenRequest { id: id.clone() })
            .await
        {
            Ok(_) => report::outln(&format!("token {id} deleted")),
            Err(s) => {
                report::eprint_error(&client.error(s));
                failed = true;
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ttl: &str, uses: Option<u32>) -> TokenCreateArgs {
        TokenCreateArgs {
            ttl: ttl.into(),
            uses,
            node: Some("node1".into()),
            description: "lab".into(),
        }
    }

    #[test]
    fn create_flags_become_the_request() {
        let r = create_request(&args("24h", None)).unwrap();
        assert_eq!((r.ttl_seconds, r.uses), (86_400, 0));
        assert_eq!((r.node.as_str(), r.description.as_str()), ("node1", "lab"));
        let r = create_request(&args("0", Some(3))).unwrap();
        assert_eq!((r.ttl_seconds, r.uses), (0, 3), "0: never expires");
        assert!(create_request(&args("1.5s", None)).is_err());
        assert!(create_request(&args("soon", None)).is_err());
        assert!(create_request(&args("1h", Some(0))).is_err());
    }

    #[test]
    fn the_table_shows_time_and_uses_left_and_no_secret() {
        let now = twinset_proto::time::parse("2026-01-01T00:00:00Z").unwrap();
        let tokens = [
            TokenInfo {
                id: "abcdef".into(),
                expires: "2026-01-02T00:00:00Z".into(),
                uses_left: Some(2),
                node: "node1".into(),
                description: "lab".into(),
                created: String::new(),
            },
            TokenInfo {
                id: "ghijkl".into(),
                ..Default::default()
            },
            TokenInfo {
                id: "mnopqr".into(),
                expires: "2025-12-31T00:00:00Z".into(),
                uses_left: Some(0),
                ..Default::default()
            },
        ];
        let out = table(&tokens, now);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["TOKEN", "TTL", "EXPIRES", "USAGES", "NODE", "DESCRIPTION"]
        );
        assert_eq!(
            lines[1],
            ["abcdef", "24h", "2026-01-02T00:00:00Z", "2", "node1", "lab"]
        );
        assert_eq!(
            lines[2],
            [
                "ghijkl",
                "<forever>",
                "<never>",
                "unlimited",
                "<any>",
                "<none>"
            ]
        );
        assert_eq!(lines[3][1], "<expired>");
    }

    #[test]
    fn delete_sends_only_the_id_of_a_whole_token() {
        let t = Token::generate(&twinset_proto::token::sha256_hex(b"ca")).unwrap();
        assert_eq!(id_of(&t.to_string()), t.id());
        assert_eq!(id_of("abcdef"), "abcdef");
    }
}
