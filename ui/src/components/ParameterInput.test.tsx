// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { errorSentence, ParameterInput } from "./ParameterInput";

afterEach(cleanup);

describe("ParameterInput", () => {
  it("ties the server's error and the hint to the input, for screen readers too", () => {
    render(<ParameterInput field={{ name: "subject", kind: "text", required: true, description: "subject line" }} value="" error="is required" onChange={() => {}} />);
    const input = screen.getByLabelText("subject (required)");
    expect(input.getAttribute("aria-invalid")).toBe("true");
    expect(input.getAttribute("aria-describedby")).toBe("param-subject-hint param-subject-error");
    expect(document.getElementById("param-subject-error")?.textContent).toBe("subject is required");
    expect(document.getElementById("param-subject-hint")?.textContent).toBe("Subject line.");
  });

  it("offers default / true / false for a boolean, and reports changes", () => {
    const onChange = vi.fn();
    render(<ParameterInput field={{ name: "read_only", kind: "boolean", required: false, description: "", defaultValue: true }} value="" onChange={onChange} />);
    const select = screen.getByLabelText("read_only") as HTMLSelectElement;
    expect([...select.options].map((o) => o.textContent)).toEqual(["Default (true)", "true", "false"]);
    fireEvent.change(select, { target: { value: "false" } });
    expect(onChange).toHaveBeenCalledWith("false");
    expect(select.getAttribute("aria-invalid")).toBeNull();
  });

  it("uses a text area for long text and lists, and says how to write them", () => {
    render(<ParameterInput field={{ name: "env", kind: "map", required: false, description: "extra environment variables" }} value={"A=1"} onChange={() => {}} />);
    expect(screen.getByLabelText("env").tagName).toBe("TEXTAREA");
    expect(screen.getByText("Extra environment variables. One NAME=value per line.")).toBeTruthy();
  });

  it("words errors as sentences", () => {
    expect(errorSentence("to", "must list at most 100 addresses")).toBe("to must list at most 100 addresses");
    expect(errorSentence("to", "Invalid email address")).toBe("Invalid email address");
  });
});
