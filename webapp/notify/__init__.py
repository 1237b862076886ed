"""Notifications (issue 16): an outbox of events written in the transaction that causes them
(supabase/migrations/20261201500100_notification_events.sql), a procrastinate worker that turns each event into
deliveries (dispatcher), and email over SMTP (mail). Webhooks plug into the same dispatcher."""
