DROP FUNCTION sync_user(text, text, text, interval);
