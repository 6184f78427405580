// render_templates.cjs - the published chat templates of the MoE families rendered by a Jinja
// engine, as goldens for tests/test_arch_template.c (templates.json in this folder).
// Engine: @huggingface/jinja (the JS Jinja that node-llama-cpp 3.21.1, the peer, ships in its
// node_modules). Templates: Qwen3 from llama.cpp's models/templates/Qwen-Qwen3-0.6B.jinja
// (argv[2]); Granite 3.0 instruct (the granitemoe 1b-a400m / 3b-a800m models), quoted below as
// llama.cpp's tests/test-chat-template.cpp quotes it.
// usage: node render_templates.cjs LLAMA_CPP_SRC PEER_NODE_MODULES > templates.json
const fs = require("fs");
const path = require("path");
const { Template } = require(path.join(process.argv[3], "@huggingface/jinja"));
const qwen3 = fs.readFileSync(path.join(process.argv[2], "models/templates/Qwen-Qwen3-0.6B.jinja"), "utf8");
const granite3 =
    "{%- if tools %}\n    {{- '<|start_of_role|>available_tools<|end_of_role|>\n' }}\n    {%- for tool in tools %}\n    {{- tool | tojson(indent=4) }}\n    {%- if not loop.last %}\n        {{- '\n\n' }}\n    {%- endif %}\n    {%- endfor %}\n    {{- '<|end_of_text|>\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n    {{- '<|start_of_role|>system<|end_of_role|>' + message['content'] + '<|end_of_text|>\n' }}\n    {%- elif message['role'] == 'user' %}\n    {{- '<|start_of_role|>user<|end_of_role|>' + message['content'] + '<|end_of_text|>\n' }}\n    {%- elif message['role'] == 'assistant' %}\n    {{- '<|start_of_role|>assistant<|end_of_role|>'  + message['content'] + '<|end_of_text|>\n' }}\n    {%- elif message['role'] == 'assistant_tool_call' %}\n    {{- '<|start_of_role|>assistant<|end_of_role|><|tool_call|>' + message['content'] + '<|end_of_text|>\n' }}\n    {%- elif message['role'] == 'tool_response' %}\n    {{- '<|start_of_role|>tool_response<|end_of_role|>' + message['content'] + '<|end_of_text|>\n' }}\n    {%- endif %}\n    {%- if loop.last and add_generation_prompt %}\n    {{- '<|start_of_role|>assistant<|end_of_role|>' }}\n    {%- endif %}\n{%- endfor %}";
const S = (role, content) => ({ role, content });
const convs = {
    sys: [S("system", "You are a helpful assistant"), S("user", "Hello"), S("assistant", "  Hi there  "), S("user", "Who are you?")],
    nosys: [S("user", "Hello"), S("assistant", "Hi there\n"), S("user", "\nWho are you?\n")],
    think_history: [S("user", "2+2?"), S("assistant", "<think>\nadd them\n</think>\n\n4"), S("user", "and 3+3?")],
    think_last: [S("system", "Be brief."), S("user", "2+2?"), S("assistant", "<think>\n\nadd them\n\n</think>\n\n\n4\n")],
    think_two: [S("user", "q1"), S("assistant", "<think>r1</think>a1"), S("user", "q2"), S("assistant", "plain a2")],
    think_nested: [S("user", "q"), S("assistant", "x<think>a</think>b<think>c</think>\nd")],
    midsys: [S("system", "first"), S("user", "u1"), S("system", "second"), S("user", "u2")],
};
const fams = [
    { family: "qwen3", source: "Qwen-Qwen3-0.6B.jinja", tmpl: qwen3, bos: "", eos: "<|im_end|>",
      convs: Object.keys(convs) },
    { family: "granite", source: "granite-3.0 instruct", tmpl: granite3, bos: "", eos: "<|end_of_text|>",
      convs: ["sys", "nosys", "think_two", "midsys"] },
];
const out = { format: "mixel-arch-templates-v1", engine: "@huggingface/jinja " +
    require(path.join(process.argv[3], "@huggingface/jinja/package.json")).version, cases: [] };
for (const f of fams) {
    const t = new Template(f.tmpl);
    for (const c of f.convs)
        for (const agp of [true, false]) {
            const text = t.render({ messages: convs[c], add_generation_prompt: agp,
                                    bos_token: f.bos, eos_token: f.eos });
            out.cases.push({ family: f.family, source: f.source, conv: c, add_generation_prompt: agp,
                             messages: convs[c], text });
        }
}
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
