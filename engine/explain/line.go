package explain

// ItemText returns the cells `proactived explain` prints for a timeline
// item — WHAT (an upper-case verdict, or event, attempt, timer,
// contact), RULE/SUBJECT, ENTITY and DETAIL — so other views (the ops
// console) describe each item in the same words as the terminal.
func ItemText(it Item) (what, who, entity, detail string) { return line(it) }
