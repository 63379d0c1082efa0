-- The Date: header of a message, parsed once when it is stored, for
-- SEARCH SENTBEFORE / SENTON / SENTSINCE (RFC 3501 6.4.4), which compare
-- the date "disregarding time and timezone", i.e. the date as the sender
-- wrote it.  So the column holds the header's wall-clock time with its zone
-- dropped (stored as if it were UTC): its UTC date is the written date.
-- NULL when the header is missing or unparsable.  It belongs to the bytes,
-- so it lives on the blob beside ENVELOPE and BODYSTRUCTURE.
ALTER TABLE blob ADD COLUMN sent_date timestamptz;
