//! Questions any broker can answer (the cluster's metadata, a producer id), asked so
//! that one broker that takes the connection and never answers (paused, frozen, cut off
//! on the way back) costs a fraction of a second instead of a request timeout.
//!
//! The brokers are asked in order, the one that answered last first. A broker that has
//! not answered within [`HEDGE_DELAY`] is not given up on: the next one is asked as
//! well, and so on every [`HEDGE_DELAY`], and the first answer wins (the others are
//! dropped). A broker that fails retriably (refused, unavailable) is followed by the
//! next one at once. An error retrying cannot help ends the question.
//!
//! This is a hedged request, as in Dean and Barroso's "The Tail at Scale": the questions
//! are cheap and read-only, so asking twice is harmless. Before it, a client whose
//! bootstrap broker froze waited `METADATA_TIMEOUT` (5 s) on it at every metadata
//! refresh, and writes whose new leader was not learnt within their request timeout
//! failed (`docs/operations.md` § Measured).

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::connection::BrokerChannel as Channel;
use crate::error::ClientError;

/// How long one broker has to answer before the next one is asked as well. A broker
/// that is up answers metadata in about a millisecond on a LAN, tens of milliseconds
/// under load; a frozen one never does.
pub const HEDGE_DELAY: Duration = Duration::from_millis(250);

/// Asks `sources` (name, connection), in order, as the module docs say, with `ask`.
/// Returns the name of the broker that answered and its answer, or the last retriable
/// error once every broker failed (the first non-retriable one at once).
pub(crate) async fn first_answer<T, F, Fut>(
    sources: Vec<(String, Channel)>,
    what: &str,
    ask: F,
) -> Result<(String, T), ClientError>
where
    F: Fn(Channel) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut waiting = sources.into_iter();
    let mut asked = FuturesUnordered::new();
    let ask_next = |asked: &mut FuturesUnordered<_>, (source, channel): (String, Channel)| {
        let answer = ask(channel);
        asked.push(async move { (source, answer.await) });
    };
    let mut last_error = None;
    loop {
        if asked.is_empty() {
            match waiting.next() {
                Some(source) => ask_next(&mut asked, source),
                None => break,
            }
        }
        let hedge = tokio::time::sleep(HEDGE_DELAY);
        tokio::select! {
            Some((source, answer)) = asked.next() => match answer {
                Ok(answer) => return Ok((source, answer)),
                Err(error) if error.is_retriable() => {
                    tracing::debug!(%source, %error, what, "no answer; asking the next broker");
                    last_error = Some(error);
                    if let Some(next) = waiting.next() {
                        ask_next(&mut asked, next);
                    }
                }
                Err(error) => return Err(error),
            },
            () = hedge, if waiting.len() > 0 => {
                let next = waiting.next().expect("checked by the guard");
                tracing::debug!(next = %next.0, what, ?HEDGE_DELAY, "no answer yet; asking another broker too");
                ask_next(&mut asked, next);
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| ClientError::Unavailable(format!("no broker to ask for {what}"))))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn sources(names: &[&str]) -> Vec<(String, Channel)> {
        names
            .iter()
            .map(|n| {
                let channel = crate::connection::lazy("127.0.0.1:1", &Default::default())
                    .expect("a lazy channel");
                (n.to_string(), channel)
            })
            .collect()
    }

    type Answer = std::pin::Pin<Box<dyn Future<Output = Result<u32, ClientError>>>>;

    /// The answer of the broker named by each call's index: `None` never answers.
    fn scripted(
        script: Vec<Option<Result<u32, ClientError>>>,
    ) -> (Arc<AtomicUsize>, impl Fn(Channel) -> Answer) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let script = Arc::new(script);
        let ask = move |_channel: Channel| {
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let answer = script[index].clone();
            Box::pin(async move {
                match answer {
                    Some(answer) => answer,
                    None => std::future::pending().await,
                }
            }) as Answer
        };
        (calls, ask)
    }

    #[tokio::test(start_paused = true)]
    async fn a_broker_that_answers_is_the_only_one_asked() {
        let (calls, ask) = scripted(vec![Some(Ok(7)), Some(Ok(8))]);
        let answer = first_answer(sources(&["a", "b"]), "metadata", ask).await;
        assert_eq!(answer.unwrap(), ("a".to_string(), 7));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_broker_costs_one_hedge_delay() {
        let (calls, ask) = scripted(vec![None, Some(Ok(8))]);
        let started = tokio::time::Instant::now();
        let answer = first_answer(sources(&["frozen", "b"]), "metadata", ask).await;
        assert_eq!(answer.unwrap(), ("b".to_string(), 8));
        assert_eq!(started.elapsed(), HEDGE_DELAY);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_moves_on_at_once_and_the_last_error_is_kept() {
        let refused = || ClientError::Unavailable("refused".into());
        let (_, ask) = scripted(vec![Some(Err(refused())), Some(Ok(3))]);
        let started = tokio::time::Instant::now();
        let answer = first_answer(sources(&["down", "up"]), "metadata", ask).await;
        assert_eq!(answer.unwrap(), ("up".to_string(), 3));
        assert_eq!(started.elapsed(), Duration::ZERO);

        let (_, ask) = scripted(vec![Some(Err(refused())), Some(Err(refused()))]);
        let error = first_answer(sources(&["x", "y"]), "metadata", ask)
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Unavailable(_)), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_retrying_cannot_help_ends_the_question() {
        let bad = ClientError::InvalidArgument("bad producer name".into());
        let (calls, ask) = scripted(vec![Some(Err(bad)), Some(Ok(1))]);
        let error = first_answer(sources(&["a", "b"]), "a producer id", ask)
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::InvalidArgument(_)), "{error}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn every_broker_silent_but_the_last_still_gets_an_answer() {
        let (calls, ask) = scripted(vec![None, None, Some(Ok(5))]);
        let started = tokio::time::Instant::now();
        let answer = first_answer(sources(&["a", "b", "c"]), "metadata", ask).await;
        assert_eq!(answer.unwrap(), ("c".to_string(), 5));
        assert_eq!(started.elapsed(), HEDGE_DELAY * 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
