-- The Date: header of a message, parsed once when it is stored, for
-- SEARCH SENTBEFORE / SENTON / SENTSINCE (RFC 3501 6.4.4).  NULL when the
-- header is missing or unparsable.  It belongs to the bytes, so it lives on
-- the blob beside ENVELOPE and BODYSTRUCTURE.
ALTER TABLE blob ADD COLUMN sent_date timestamptz;
